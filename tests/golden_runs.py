"""Golden runs: short trainings recorded before a reorganisation, replayed after it
(tests/test_golden_runs.py). Every metric row but timings must come out equal, and the final weights
bit-equal, unless a run is listed in ``ALLCLOSE`` (then 1e-6 relative, with the reason there).

    python tests/golden_runs.py --record [NAME ...]     # (re)write tests/golden/NAME.json

Record only from a tree whose behaviour is the reference: the point of these files is that a change
which should not alter behaviour leaves them untouched. Every run uses one thread, so a machine
with more cores computes the same sums in the same order.

Bit-equality holds on machines whose float arithmetic is the recording machine's: another CPU (its
vector kernels) or another build of torch rounds differently in the last bit, and a sampled token
then flips within a few steps. ``--record`` also writes ``tests/golden/machine.json``, a fingerprint
of that arithmetic (``numerics_fingerprint``: matmuls, softmax, exp/log, sampling, a transformer's
forward and backward and an AdamW step, one thread); the replay tests run where the fingerprint
matches and are skipped, saying why, where it does not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
ONE_THREAD = ["--train.threads", "1", "--quiet"]

# the sort5 preset's settings when these runs were recorded (it has since decayed its lr and sampled dynamically)
SORT5_AS_RECORDED = ["--optim.lr_schedule", "constant", "--algo.dynamic_sampling", "false"]
# name -> (command after `rlvr train`, a crash to inject first (then --resume), needs ray)
RUNS: dict[str, tuple[list[str], str | None, bool]] = {
    "sort-toy-seed0": (["--config", "sort-toy", "--seed", "0"], None, False),
    "sort-toy-seed3": (["--config", "sort-toy", "--seed", "3"], None, False),
    "sort5-20steps": (["--config", "sort5", "--train.outer_steps", "20", "--eval.every", "10",
                       "--task.num_eval_prompts", "24", "--eval.pass_samples", "5", *SORT5_AS_RECORDED], None, False),
    "hf-5steps": (["--config", "sort5", "--policy", "hf", "--model", "{hf_model}", "--train.outer_steps", "5",
                   "--train.prompts_per_step", "4", "--eval.every", "5", "--task.num_eval_prompts", "8",
                   "--eval.pass_samples", "5", "--algo.kl_coef", "0.05", *SORT5_AS_RECORDED], None, False),
    "resumed": (["--config", "lecture-sort-clipped", "--seed", "5", "--train.outer_steps", "8",
                 "--eval.every", "4", "--checkpoint.every", "2", "--algo.kl_coef", "0.1",
                 "--algo.ref_refresh_every", "3"], "manifest@6", False),
    "ray-2workers": (["--config", "sort-toy", "--backend", "ray", "--rollout-workers", "2",
                      "--train.outer_steps", "10", "--algo.kl_coef", "0.1"], None, True),
}
ALLCLOSE: dict[str, str] = {}  # run name -> why its arithmetic changed (summation order), if it did
# metrics added since the runs were recorded: a replay may carry them, the recorded keys must all match
ADDED_METRICS: set[str] = set()  # none since the recording of 2026-12-02


TINY_HF = {"task.name": "sort-text", "task.length": 5, "policy.kind": "transformer", "policy.hidden_size": 32,
           "policy.intermediate_size": 64, "policy.num_layers": 2, "policy.num_heads": 2}


def hf_model(folder: Path, config: dict | None = None) -> Path:
    """A tiny model in the Hugging Face format: our transformer built from ``config`` (default: the
    golden runs' sizes, TINY_HF) with seed 0 and exported, the same every time."""
    from rlvr.config import load_config
    from rlvr.policies import build_policy
    from rlvr.policies.export import save_final
    from rlvr.tasks import build_task

    path = folder / "hf-model"
    if not (path / "config.json").exists():
        cfg = load_config(None, config or TINY_HF)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            save_final(build_policy(cfg.policy, build_task(cfg.task)), path)
    return path


def rlvr(args: list[str], *, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("RLVR_TEST_CRASH", None)
    if crash:
        env["RLVR_TEST_CRASH"] = crash
    return subprocess.run([sys.executable, "-m", "rlvr", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=900)


FINGERPRINT = GOLDEN / "machine.json"
FINGERPRINT_CODE = """
import hashlib, torch
torch.set_num_threads(1)
from rlvr.config import load_config
from rlvr.policies import build_policy
from rlvr.tasks import build_task
digest = hashlib.sha256()
def add(t):
    digest.update(t.detach().contiguous().view(torch.uint8).numpy().tobytes())
g = torch.Generator().manual_seed(0)
a, b = torch.randn(64, 96, generator=g), torch.randn(96, 160, generator=g)
x = a @ b
for t in (x, x.softmax(-1), x.log_softmax(-1), x.exp(), torch.sigmoid(x), x.tanh(), torch.nn.functional.silu(x),
          torch.multinomial(x[:8].softmax(-1), 4, replacement=True, generator=g)):
    add(t)
torch.manual_seed(0)
cfg = load_config(None, {"task.name": "sort-text", "task.length": 5, "policy.kind": "transformer",
                         "policy.hidden_size": 32, "policy.intermediate_size": 64, "policy.num_layers": 2,
                         "policy.num_heads": 2})
policy = build_policy(cfg.policy, build_task(cfg.task))
params = list(policy.trainable_parameters())
optimizer = torch.optim.AdamW(params, lr=1e-3)
prompts = torch.randint(3, 14, (4, 10), generator=g)
responses = torch.randint(3, 14, (4, 6), generator=g)
logp, entropy = policy.logprobs(prompts, responses, torch.ones(4, 6), group_size=2, temperature=1.0)
(logp.sum() + entropy.sum()).backward()
optimizer.step()
for t in (logp, entropy, *params):
    add(t)
print(digest.hexdigest())
"""


def numerics_fingerprint() -> str:
    """sha256 over float results that differ between machines that round differently (FINGERPRINT_CODE,
    one thread, in a fresh process as the golden runs are)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", FINGERPRINT_CODE], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def skip_reason() -> str | None:
    """Why the golden runs cannot replay bit for bit here (None: they can)."""
    if not FINGERPRINT.exists():
        return "tests/golden/machine.json is missing: record the golden runs again"
    recorded = json.loads(FINGERPRINT.read_text())
    here = numerics_fingerprint()
    if here != recorded["fingerprint"]:
        return (f"this machine rounds differently from the one that recorded tests/golden "
                f"({recorded.get('machine', '?')}; fingerprint {here[:12]} != {recorded['fingerprint'][:12]}): "
                "bit-equal replay is only defined there; `python tests/golden_runs.py --record` here to use them")
    return None


def run(name: str, folder: Path) -> dict:
    """Train the named golden run in ``folder``; its metrics (timings dropped) and final weights."""
    args, crash, _ = RUNS[name]
    args = [a.replace("{hf_model}", str(hf_model(folder))) for a in args]
    run_dir = folder / name
    train = ["train", *args, *ONE_THREAD, "--run-dir", str(run_dir)]
    if crash:
        killed = rlvr(train, crash=crash)
        assert killed.returncode != 0, f"{name}: the injected crash {crash} did not happen"
        train = ["train", "--resume", str(run_dir), "--quiet"]
    done = rlvr(train)
    assert done.returncode == 0, f"{name}: {done.stderr[-3000:]}"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    metrics = [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))} for r in rows]
    return {"args": RUNS[name][0], "crash": crash, "metrics": metrics, "weights": weights(run_dir / "final")}


def weights(final: Path) -> dict:
    """sha256 over every tensor of the final policy (name, dtype, shape, bytes), and per tensor its
    float64 sum and sum of squares (for the 1e-6 comparison)."""
    files = sorted(final.glob("*.safetensors"))
    tensors = {name: t for f in files for name, t in load_file(str(f)).items()}
    digest = hashlib.sha256()
    stats = {}
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        t64 = t.double()
        stats[name] = [float(t64.sum()), float((t64 * t64).sum())]
    return {"sha256": digest.hexdigest(), "tensors": stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", action="store_true", help="write tests/golden/NAME.json")
    parser.add_argument("names", nargs="*", help="runs to record (default: all)")
    args = parser.parse_args()
    if not args.record:
        parser.error("nothing to do without --record")
    import tempfile
    GOLDEN.mkdir(exist_ok=True)
    import platform
    FINGERPRINT.write_text(json.dumps({"fingerprint": numerics_fingerprint(), "torch": torch.__version__,
                                       "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                                       "cpu_capability": torch.backends.cpu.get_cpu_capability()}, indent=1) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names or list(RUNS):
            result = run(name, Path(tmp))
            (GOLDEN / f"{name}.json").write_text(json.dumps(result, indent=0, sort_keys=True) + "\n")
            print(f"recorded {name}: {len(result['metrics'])} rows, weights {result['weights']['sha256'][:12]}")


if __name__ == "__main__":
    main()
