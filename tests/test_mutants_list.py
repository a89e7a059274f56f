"""scripts/mutants.py stays runnable: every mutant's fragment occurs exactly once in its file (a change
that moves or rewrites a formula must carry its mutants along), and its tests exist."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_mutants():
    spec = importlib.util.spec_from_file_location("mutants", ROOT / "scripts" / "mutants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutants", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.MUTANTS


def test_every_mutant_applies_once_and_names_existing_tests():
    mutants = load_mutants()
    assert len(mutants) >= 60
    for m in mutants:
        text = (ROOT / m.file).read_text()
        assert text.count(m.old) == 1, (m.file, m.old)
        assert m.old != m.new, m.why
        assert all((ROOT / t).is_file() for t in m.tests), (m.why, m.tests)
