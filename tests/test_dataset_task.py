"""task.name dataset: rows from JSONL/JSON/CSV/Parquet/datasets folders, bad rows, the split, the reward."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from rlvr.cli import main
from rlvr.config import load_config
from rlvr.errors import ConfigError
from rlvr.tasks import Task, build_task
from rlvr.tasks.dataset import DatasetTask, answer_text
from rlvr.tasks.text import Completion
from rlvr.tokenizer import EOS_ID, PAD_ID, CharTokenizer

ROOT = Path(__file__).resolve().parents[1]
ROWS = [{"prompt": "1+2=", "answer": "3", "a": 1}, {"prompt": "4+4=", "answer": 8, "a": 4},
        {"prompt": "5+6=", "answer": "11", "a": 5}, {"prompt": "9+9=", "answer": "18", "a": 9}]
TINY = ["--policy.kind", "transformer", "--policy.hidden_size", "16", "--policy.intermediate_size", "32",
        "--policy.num_layers", "1", "--policy.num_heads", "2", "--train.outer_steps", "2",
        "--train.prompts_per_step", "2", "--train.group_size", "2", "--task.num_eval_prompts", "2",
        "--eval.pass_k", "1", "--eval.pass_samples", "1", "--quiet"]


def dataset_task(path: Path | str, **fields: object) -> DatasetTask:
    """The task of a file; eval_fraction 0.5 holds out some prompt of each small file here."""
    fields.setdefault("eval_fraction", 0.5)
    cfg = load_config(None, {"task.name": "dataset", "task.path": str(path), **{f"task.{k}": v for k, v in fields.items()}})
    task = build_task(cfg.task)
    assert isinstance(task, DatasetTask)
    return task


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def all_prompts(task: DatasetTask) -> list[str]:
    return sorted(task.train_prompts + task.heldout_prompts)


def check_rows(task: DatasetTask) -> None:
    assert all_prompts(task) == ["1+2=", "4+4=", "5+6=", "9+9="]
    assert [task.solution(p) for p in ("1+2=", "4+4=", "5+6=")] == ["3", "8", "11"]
    assert task.columns("5+6=") == {"answer": "11", "a": 5} or task.columns("5+6=") == {"answer": "11", "a": "5"}


def test_rows_are_read_from_jsonl_json_and_csv(tmp_path):
    check_rows(dataset_task(write_jsonl(tmp_path / "d.jsonl", ROWS)))
    (tmp_path / "d.json").write_text(json.dumps(ROWS, indent=2))
    check_rows(dataset_task(tmp_path / "d.json"))
    with open(tmp_path / "d.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["prompt", "answer", "a"])
        writer.writeheader()
        writer.writerows(ROWS)
    task = dataset_task(tmp_path / "d.csv")
    check_rows(task)
    assert task.columns("4+4=") == {"answer": "8", "a": "4"}  # CSV values are text
    assert dataset_task(write_jsonl(tmp_path / "d.jsonl", ROWS)).columns("4+4=") == {"answer": 8, "a": 4}


def test_rows_are_read_from_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [{**r, "answer": str(r["answer"])} for r in ROWS]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    check_rows(dataset_task(tmp_path / "d.parquet"))


def test_rows_are_read_from_a_saved_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{**r, "answer": str(r["answer"])} for r in ROWS]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    check_rows(dataset_task(tmp_path / "saved"))


def test_other_field_names_and_numbers_as_answers(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "2*3?", "solution": 6}, {"question": "2*5?", "solution": 10}])
    task = dataset_task(path, prompt_field="question", answer_field="solution", eval_fraction=0.7)
    assert all_prompts(task) == ["2*3?", "2*5?"] and task.solution("2*5?") == "10"


def test_bad_rows_are_skipped_and_each_reported_with_file_and_line(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(ROWS[0]).encode(),                       # 1 good
             json.dumps({"prompt": "2+2="}).encode(),            # 2 no answer
             json.dumps({"prompt": " ", "answer": "1"}).encode(),  # 3 empty prompt
             b'{"prompt": "caf\xe9", "answer": "1"}',             # 4 latin-1, not UTF-8
             b'{"prompt": "3+3=", "answer": ',                    # 5 cut short
             b"",                                                 # 6 blank: ignored
             b"[1, 2]",                                           # 7 not an object
             json.dumps({"prompt": "1+2=", "answer": "4"}).encode(),  # 8 repeated prompt: the first row wins
             json.dumps({"prompt": "7+1=", "answer": "8", "note": [1]}).encode(),  # 9 good
             json.dumps({"prompt": "7+2=", "answer": ["9"]}).encode()]  # 10 answer of a wrong type
    path.write_bytes(b"\n".join(lines) + b"\n")
    task = dataset_task(path)
    assert all_prompts(task) == ["1+2=", "7+1="] and task.solution("1+2=") == "3"
    assert task.columns("7+1=") == {"answer": "8", "note": [1]}
    assert capsys.readouterr().err.splitlines() == [
        f"rlvr: warning: {path}:2: missing field 'answer'; row skipped",
        f"rlvr: warning: {path}:3: empty field 'prompt'; row skipped",
        f"rlvr: warning: {path}:4: not UTF-8 (byte 16 of the line); row skipped",
        f"rlvr: warning: {path}:5: malformed JSON (Expecting value at column 30); row skipped",
        f"rlvr: warning: {path}:7: a JSON list, not an object; row skipped",
        f"rlvr: warning: {path}:10: field 'answer' is a list, not a string or number; row skipped",
        f"rlvr: warning: task.path: skipped 6 bad rows of {path}",
        f"rlvr: warning: task.path: {path} repeats a prompt in 1 row; kept the first of each",
    ]
    with pytest.raises(ConfigError) as refused:
        dataset_task(path, bad_rows="refuse").eval_prompts()
    assert str(refused.value) == (f"task.path: {path}:2: missing field 'answer' (task.bad_rows refuse; skip to "
                                  "train on the other rows)")


def test_bad_csv_and_json_rows_name_their_lines(tmp_path, capsys):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_bytes(b'prompt,answer\n5+6=,11\n1+2=,3\n"two\nlines",\n4+4=,8,extra\n5+5=\xff,10\n6+6=\n')
    task = dataset_task(csv_path)
    assert all_prompts(task) == ["1+2=", "5+6="]
    assert capsys.readouterr().err.splitlines()[:4] == [
        f"rlvr: warning: {csv_path}:4: empty field 'answer'; row skipped",
        f"rlvr: warning: {csv_path}:6: 3 values for 2 columns; row skipped",
        f"rlvr: warning: {csv_path}:7: not UTF-8; row skipped",
        f"rlvr: warning: {csv_path}:8: missing field 'answer'; row skipped",
    ]
    json_path = tmp_path / "bad.json"
    json_path.write_text('[\n  {"prompt": "1+2=", "answer": "3"},\n  {"prompt": "x"},\n  {"prompt": "y",\n]\n')
    with pytest.raises(ConfigError, match=rf"^task.path: {json_path}:5: malformed JSON"):
        dataset_task(json_path).eval_prompts()
    capsys.readouterr()


def test_split_is_stable_disjoint_and_the_base_hash_split(tmp_path):
    rows = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(20) for b in range(10)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    task, again = dataset_task(path, eval_fraction=0.2), dataset_task(path, eval_fraction=0.2)
    train, heldout = task.train_prompts, task.heldout_prompts
    assert (train, heldout) == (again.train_prompts, again.heldout_prompts)
    assert not set(train) & set(heldout) and sorted(train + heldout) == sorted(r["prompt"] for r in rows)
    assert heldout == [r["prompt"] for r in rows if Task.is_heldout(task, r["prompt"])]
    assert (len(train), len(heldout)) == (161, 39)  # about eval_fraction 0.2 of 200, by the hash of each prompt
    rng = np.random.default_rng(0)
    assert not {task.train_prompt(rng) for _ in range(500)} & set(heldout)
    evaluated = task.eval_prompts()
    assert len(evaluated) == 32 and set(evaluated) <= set(heldout) and evaluated == again.eval_prompts()
    assert all(task.is_heldout(p) for p in heldout) and not any(task.is_heldout(p) for p in train)


def test_an_eval_file_is_the_held_out_split(tmp_path, capsys):
    path = write_jsonl(tmp_path / "train.jsonl", ROWS)
    held = write_jsonl(tmp_path / "test.jsonl", [{"prompt": "5+6=", "answer": "11"}, {"prompt": "7+7=", "answer": "14"}])
    task = dataset_task(path, eval_path=str(held))
    assert task.train_prompts == ["1+2=", "4+4=", "9+9="] and task.heldout_prompts == ["5+6=", "7+7="]
    assert task.eval_prompts() == ["5+6=", "7+7="] and task.solution("7+7=") == "14"
    assert "dropped 1 training prompts that are also in task.eval_path" in capsys.readouterr().err


def completion(tokenizer: CharTokenizer, text: str, *ids_after: int) -> Completion:
    ids = tuple(tokenizer.encode_answer(text)) + ids_after
    return Completion(ids, tokenizer.eos_id, tokenizer.special_ids, tokenizer.decode)


def test_reward_reads_the_answer_before_the_first_special_token_of_a_finished_response(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "47 + 38 =", "answer": "85"}, {"prompt": "1+1=", "answer": "2"}])
    task = dataset_task(path)
    tok = CharTokenizer(" +=0123456789<>/abcdeinrstw")
    assert task.reward("47 + 38 =", completion(tok, "47 + 38 = 85", EOS_ID)) == 1.0
    assert task.reward("47 + 38 =", completion(tok, "85.0", EOS_ID)) == 1.0       # numbers compare by value
    assert task.reward("47 + 38 =", completion(tok, "47 + 38 = 85")) == 0.0       # truncated: no <eos>
    assert task.reward("47 + 38 =", completion(tok, "84", EOS_ID)) == 0.0
    assert task.reward("47 + 38 =", completion(tok, "85", PAD_ID, *tok.encode_answer("9"), EOS_ID)) == 1.0
    assert task.reward("47 + 38 =", "the answer is 85") == 1.0                      # plain text as it is
    # a chat model's end-of-turn token (<|im_end|>, its eos) after the answer
    im_end, vocab = 100, {i: ch for i, ch in enumerate("47 +38=5")}
    chat = Completion((*[i for ch in "47 + 38 = 85" for i in vocab if vocab[i] == ch], im_end), im_end,
                      frozenset({im_end}), lambda ids: "".join(vocab[i] for i in ids if i != im_end))
    assert answer_text(chat) == "47 + 38 = 85" and task.reward("47 + 38 =", chat) == 1.0
    tagged = dataset_task(path, eval_fraction=0.5, verifier="tag:answer")
    assert tagged.reward("47 + 38 =", "<think>40+30=70, 7+8=15</think><answer>85</answer>") == 1.0
    assert tagged.reward("47 + 38 =", "<think>85</think> 85") == 0.0


def test_the_shipped_addition_file_and_its_config(monkeypatch):
    monkeypatch.chdir(ROOT)
    from rlvr.cli import resolve_config_path

    cfg = load_config(resolve_config_path("add-dataset"))
    task = build_task(cfg.task)
    assert isinstance(task, DatasetTask) and len(task.train_prompts) + len(task.heldout_prompts) == 1000
    for prompt in task.train_prompts[:50]:
        columns = task.columns(prompt)
        assert str(columns["a"] + columns["b"]) == task.solution(prompt) == columns["answer"]
    assert f" {columns['a']} " in prompt


def test_export_script_regenerates_the_shipped_addition_file():
    import runpy

    script = runpy.run_path(str(ROOT / "scripts" / "export_datasets.py"))
    rows = script["addition_rows"]()
    assert "".join(json.dumps(r) + "\n" for r in rows) == (ROOT / "examples" / "addition.jsonl").read_text()


BAD = [  # (flags, the one line's start)
    (["--task.path", "no/such.jsonl"], "rlvr: error: task.path: 'no/such.jsonl' does not exist"),
    (["--task.path", "{data}", "--task.verifier", "tags:answer"], "rlvr: error: task.verifier: unknown verifier 'tags:answer'"),
    (["--task.path", "{data}", "--task.answer_field", "solution", "--task.bad_rows", "refuse"],
     "rlvr: error: task.path: {data}:1: missing field 'solution' (task.bad_rows refuse"),
    (["--task.path", "{data}", "--task.bad_rows", "drop"], "rlvr: error: task.bad_rows"),
    (["--task.path", "{data}", "--task.prompt_field", "question"], "rlvr: error: task.path: '{data}' holds no usable row"),
    ([], "rlvr: error: task.path: the dataset task needs a file"),
    (["--task.path", "{data}", "--task.prompt_template", "{prompt"], "rlvr: error: task.prompt_template: '{prompt'"),
    (["--task.path", "{data}", "--task.prompt_template", "Q: {} A:"], "rlvr: error: task.prompt_template: {} is not"),
]


@pytest.mark.parametrize("flags,start", BAD)
def test_bad_dataset_input_is_one_line_exit_2(flags, start, tmp_path, capsys):
    data = str(write_jsonl(tmp_path / "d.jsonl", ROWS))
    flags = [f.replace("{data}", data) for f in flags]
    code = main(["train", "--task.name", "dataset", *flags, *TINY, "--run-dir", str(tmp_path / "run")])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("rlvr: warning:")]
    assert code == 2 and len(err) == 1 and err[0].startswith(start.replace("{data}", data)), err


def test_rlvr_train_runs_a_dataset_task(tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(5) for b in range(5)])
    run = tmp_path / "run"
    assert main(["train", "--task.name", "dataset", "--task.path", str(data), "--task.max_new_tokens", "3",
                 *TINY, "--run-dir", str(run)]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2] and "eval/exact_match" in rows[-1]
    sample = json.loads((run / "samples.jsonl").read_text().splitlines()[0])
    assert sample["prompt"].endswith("=") and sample["solution"] == str(eval(sample["prompt"][:-1]))



def test_a_system_prompt_is_the_chat_models_first_turn(tmp_path):
    """task.system_prompt reaches an hf policy's chat template before the user turn; our transformer,
    without a chat template, refuses it in one line."""
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from rlvr.policies import build_policy
    from tiny_gguf import write_tiny_llama_gguf

    write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    assert main(["convert", "--gguf", str(tmp_path / "tiny.gguf"), "--out", str(tmp_path / "model")]) == 0
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+1?", "answer": str(a + 1)}) + "\n" for a in range(20)))
    base = {"task.name": "dataset", "task.path": str(data), "policy.kind": "hf", "policy.model": str(tmp_path / "model")}
    texts = {}
    for system in (None, "Be brief."):
        cfg = load_config(None, {**base, **({"task.system_prompt": system} if system else {})})
        policy = build_policy(cfg.policy, build_task(cfg.task))
        texts[system] = policy.codec.tokenizer.decode(policy.encode_prompts(["1+1?"])[0].tolist())
    assert texts[None].endswith("<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n")
    assert "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n1+1?" in texts["Be brief."]
    assert "system" not in texts[None]
    cfg = load_config(None, {"task.name": "dataset", "task.path": str(data), "task.system_prompt": "Be brief.",
                             "policy.kind": "transformer", "policy.hidden_size": 16, "policy.num_heads": 2})
    with pytest.raises(ConfigError, match="task.system_prompt: policy.kind 'transformer' has no chat template"):
        build_policy(cfg.policy, build_task(cfg.task))


def test_answer_found_is_a_readable_answer_right_or_wrong(tmp_path):
    task = dataset_task(write_jsonl(tmp_path / "d.jsonl", ROWS))
    tok = CharTokenizer(" +=0123456789abcdeinrstw")
    assert task.answer_found("1+2=", completion(tok, "1 + 2 = 3", EOS_ID)) is True
    assert task.answer_found("1+2=", completion(tok, "4", EOS_ID)) is True            # wrong, yet an answer
    assert task.answer_found("1+2=", completion(tok, "1 + 2 = 3")) is False           # truncated: no <eos>
    assert task.answer_found("1+2=", completion(tok, "we ran it", EOS_ID)) is False   # no number to read
    tagged = dataset_task(tmp_path / "d.jsonl", verifier="tag:answer")
    assert tagged.answer_found("1+2=", "<answer>4</answer>") and not tagged.answer_found("1+2=", "<answer>4")
    assert Task.answer_found(task, "1+2=", [1, 2]) is None                            # the base: not a text task


def test_evaluate_reports_pass_at_1_mean_length_and_format_rate_of_the_same_responses(tmp_path):
    """The new metrics recomputed by hand from the policy's own greedy and sampled responses."""
    import torch

    from rlvr.evaluation import evaluate, pass_at_k
    from rlvr.policies import build_policy
    from rlvr.sft import sft_loss

    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"{a}*{b}=", "answer": str(a * b)} for a in range(12) for b in range(12)])
    # three tokens: a product of one or two digits and <eos> fit, one of three digits is cut off
    cfg = load_config(None, {"task.name": "dataset", "task.path": str(data), "task.max_new_tokens": 3,
                             "task.num_eval_prompts": 8, "policy.kind": "transformer", "policy.hidden_size": 16,
                             "policy.intermediate_size": 32, "policy.num_layers": 1, "policy.num_heads": 2})
    task = build_task(cfg.task)
    torch.manual_seed(0)
    policy = build_policy(cfg.policy, task)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-2)
    for _ in range(80):  # a short warm start on the training answers: some right, some wrong, some unended
        optimizer.zero_grad()
        sft_loss(policy, task.train_prompts, [task.solution(p) for p in task.train_prompts]).backward()
        optimizer.step()
    got = evaluate(policy, task, pass_k=3, pass_samples=4, seed=5)
    prompts = task.eval_prompts()
    ids = policy.encode_prompts(prompts)
    greedy_ids, mask = policy.greedy(ids)
    greedy = policy.decode_responses(greedy_ids, mask)
    samples = policy.sample(ids, 4, generator=torch.Generator().manual_seed(5), temperature=1.0)
    sampled = policy.decode_responses(samples.response_ids, samples.mask)
    correct = [sum(task.is_correct(p, r) for r in sampled[4 * i:4 * i + 4]) for i, p in enumerate(prompts)]
    assert got["eval/pass@1"] == pytest.approx(sum(c / 4 for c in correct) / len(prompts))
    assert got["eval/pass@3"] == pytest.approx(sum(pass_at_k(4, c, 3) for c in correct) / len(prompts))
    lengths = [int(m.sum()) for m in mask]
    assert got["eval/mean_length"] == pytest.approx(sum(lengths) / len(prompts)) and 1 <= got["eval/mean_length"] <= 3
    found = [answer_text(r) is not None and any(ch.isdigit() for ch in answer_text(r)) for r in greedy]
    assert got["eval/format_rate"] == pytest.approx(sum(found) / len(prompts))
    assert set(got) == {"eval/reward_mean", "eval/exact_match", "eval/pass@3", "eval/pass@1", "eval/mean_length",
                        "eval/format_rate"}
    assert 0 < got["eval/format_rate"] < 1 and len(set(lengths)) > 1 and 0 < got["eval/pass@1"] < got["eval/pass@3"]  # not degenerate
    assert len(evaluate(policy, task, pass_k=1, pass_samples=2, seed=5)) == 5  # k = 1: pass@1 once


def test_a_prompt_template_fills_in_the_rows_columns(tmp_path, capsys):
    rows = [*ROWS, {"prompt": "7+7=", "answer": "14"}]                      # no column a: reported, skipped
    task = dataset_task(write_jsonl(tmp_path / "d.jsonl", rows), prompt_template="{prompt} ({a}) Answer in <answer></answer>.",
                        eval_fraction=0.9)
    assert all_prompts(task) == ["1+2= (1) Answer in <answer></answer>.", "4+4= (4) Answer in <answer></answer>.",
                                 "5+6= (5) Answer in <answer></answer>.", "9+9= (9) Answer in <answer></answer>."]
    assert task.solution("5+6= (5) Answer in <answer></answer>.") == "11"
    assert task.columns("5+6= (5) Answer in <answer></answer>.") == {"answer": "11", "a": 5}
    assert f"{tmp_path / 'd.jsonl'}:5: no column 'a' for task.prompt_template; row skipped" in capsys.readouterr().err
