"""``servesim profile`` end to end: a tiny catalog model on the numpy backend, and the error paths."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import yaml
from typer.testing import CliRunner

from servesim.cli import app, main
from servesim.profile import COLUMNS
from tiny_models import TINY



@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    """One quick-plan run of the tiny model into a folder it creates: (CLI result, that folder)."""
    folder = tmp_path_factory.mktemp("profile")
    (folder / "tiny.yaml").write_text(yaml.safe_dump({"models": {"tiny": TINY}}), encoding="utf-8")
    args = [
        "profile", "--model", "tiny", "--catalog", str(folder / "tiny.yaml"), "--backend", "numpy",
        "--plan", "quick", "--repeats", "2", "--warmup", "1", "-o", str(folder / "new" / "tiny_steps.csv"),
    ]
    return CliRunner().invoke(app, args), folder / "new"


def test_profile_prints_progress_and_a_summary_of_measured_and_skipped_rows(profiled):
    result, folder = profiled
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("profiling tiny on cpu: ") and lines[0].endswith("with numpy: plan quick, 9 rows")
    assert "  [1/9] prefill 16 eager: " in result.output
    assert "rows measured: 7 (2 layers, cpu: " in result.output
    assert "rows skipped: 2\n  graphed rows need CUDA graphs (torch on a CUDA device): 2\n" in result.output
    assert lines[-1] == f"wrote {folder / 'tiny_steps.csv'} and {folder / 'device.json'}"


def test_profile_writes_the_steps_csv_and_device_json(profiled):
    _, folder = profiled
    with (folder / "tiny_steps.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == COLUMNS and len(rows) == 7
    assert {row["model"] for row in rows} == {"tiny"} and all(float(row["median_ms"]) > 0 for row in rows)
    facts = json.loads((folder / "device.json").read_text(encoding="utf-8"))
    assert facts["backend"] == "numpy" and facts["gemm_1024_tflops"] > 0


def test_profile_csv_reads_back_with_the_steps_csv_reader(profiled):
    steprows = pytest.importorskip("servesim.perf.steprows")
    _, folder = profiled
    steps = steprows.read_steps_csv(folder / "tiny_steps.csv", require_measured=True)
    assert [row.label() for row in steps.rows] == [
        "tiny L2 prefill 16 eager", "tiny L2 prefill 128 eager", "tiny L2 prefill 1024 eager",
        "tiny L2 prefill 4x64 eager", "tiny L2 decode 1x128 eager", "tiny L2 decode 8x512 eager",
        "tiny L2 prefill 2x256 + decode 4x512 eager",
    ]
    assert all(row.num_layers == 2 and row.measured_s > 0 for row in steps.rows)
    assert steps.rows[-1].shape().num_tokens == 516


def run_main(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


def test_torch_backend_without_torch_is_one_error_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail, as when not installed
    argv = ["profile", "--model", "llama-3-8b", "--backend", "torch", "-o", str(tmp_path / "o.csv")]
    code, err = run_main(argv, capsys)
    assert code == 2
    assert err == "error: servesim profile needs PyTorch: pip install 'servesim[profile]'\n"
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "error: unknown model 'nope'; known: llama-3-8b, "),
        (["--model", "deepseek-v3"], "error: model 'deepseek-v3': profiling supports MHA/GQA attention, not MLA"),
        (["--model", "llama-3-8b", "--plan", "huge"], "error: option --plan: unknown plan 'huge'; known: "),
        (["--model", "llama-3-8b", "--backend", "numpy", "--device", "cuda"], "error: option --device cuda: "),
    ],
)
def test_user_mistakes_are_one_error_line(args, message, capsys, tmp_path):
    code, err = run_main(["profile", *args, "-o", str(tmp_path / "o.csv")], capsys)
    assert code == 2 and err.startswith(message) and err.count("\n") == 1


def test_an_output_path_that_is_a_folder_fails_before_profiling(capsys, tmp_path):
    code, err = run_main(["profile", "--model", "llama-3-8b", "--backend", "numpy", "-o", str(tmp_path)], capsys)
    assert code == 2 and err == f"error: option --out {tmp_path}: is a folder; give the CSV file to write\n"


def test_a_run_that_measures_no_row_is_an_error_not_a_header_only_csv(monkeypatch, capsys, tmp_path):
    # Without a GPU, graphed rows are skipped; with (almost) no free memory, so are the others.
    monkeypatch.setattr("servesim.profile.numpy_backend.available_host_bytes", lambda: 1.0)
    out = tmp_path / "o.csv"
    argv = ["profile", "--model", "llama-3-8b", "--backend", "numpy", "--plan", "quick", "-o", str(out)]
    code, err = run_main(argv, capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: servesim profile measured no rows on cpu")
    assert "graphed rows need CUDA graphs (torch on a CUDA device): 2" in err
    assert "needs more memory than the device has free: 7" in err
    assert "nothing written; it needs a CUDA GPU with PyTorch (pip install 'servesim[profile]'" in err
    assert "or fewer layers (--num-layers)" in err
    assert not out.exists() and not (tmp_path / "device.json").exists()
