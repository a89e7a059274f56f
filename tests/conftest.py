import itertools

import pytest
import torch

from rlvr.policies.toy import ToyPolicy


@pytest.fixture
def tiny_toy():
    """A toy policy small enough to enumerate: vocabulary 3, prompt and response length 2."""
    torch.manual_seed(0)
    policy = ToyPolicy(vocab_size=3, embedding_dim=4, prompt_length=2, response_length=2).double()
    responses = torch.tensor(list(itertools.product(range(3), repeat=2)))  # (9, 2): every response
    return policy, responses
