"""Steps CSV reading: shapes of hand-written rows and one clear line per bad row."""

from __future__ import annotations

import pytest

from servesim.errors import TraceError
from servesim.perf import BatchShape
from servesim.perf.steprows import read_steps_csv

HEADER = "model,kind,prefill_lens,decode_batch,decode_ctx,graphed,median_ms,note\n"


def write(tmp_path, body: str, header: str = HEADER):
    path = tmp_path / "steps.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_rows_parse_into_shapes_and_keep_every_cell(tmp_path):
    path = write(
        tmp_path,
        "llama-3-8b,prefill,512+128,0,0,0,40.5,a\n"
        "llama-3-8b,decode,,4,1000,1,9.5,b\n"
        "llama-3-8b,mixed,256,2,99,0,20,c\n",
    )
    steps = read_steps_csv(path, require_measured=True)
    assert steps.columns == ("model", "kind", "prefill_lens", "decode_batch", "decode_ctx", "graphed", "median_ms", "note")
    prefill, decode, mixed = steps.rows
    assert prefill.prefill_lens == (512, 128) and prefill.num_tokens == 640 and prefill.measured_s == 0.0405
    assert prefill.shape() == BatchShape(640, 2, 2, 512 * 513 // 2 + 128 * 129 // 2, 640, 0, 0)
    # Each decode reads its 1000 cached tokens plus the new one.
    assert decode.graphed and decode.shape() == BatchShape(4, 4, 0, 0, 0, 4, 4 * 1001)
    assert mixed.shape().num_tokens == 258 and mixed.label() == "llama-3-8b prefill 256 + decode 2x99 eager"
    assert [r.index for r in steps.rows] == [1, 2, 3]
    assert steps.raw[1]["note"] == "b"


def test_optional_num_layers_and_empty_counts(tmp_path):
    header = "model,kind,prefill_lens,decode_batch,decode_ctx,graphed,num_layers\n"
    steps = read_steps_csv(write(tmp_path, "llama-3-70b,prefill,64,,,,8\nllama-3-8b,prefill,64,0,0,0,\n", header))
    assert steps.rows[0].num_layers == 8 and steps.rows[0].decode_batch == 0 and not steps.rows[0].graphed
    assert steps.rows[1].num_layers is None and steps.rows[1].measured_s is None
    assert steps.rows[0].label() == "llama-3-70b L8 prefill 64 eager"


@pytest.mark.parametrize(
    "row, message",
    [
        ("llama-3-8b,prefil,64,0,0,0,1,x", "row 2 (line 3): column 'kind' = 'prefil': must be one of prefill, decode, mixed"),
        ("llama-3-8b,prefill,64+0,0,0,0,1,x", "row 2 (line 3): column 'prefill_lens' = '64+0'"),
        ("llama-3-8b,decode,,four,10,0,1,x", "row 2 (line 3): column 'decode_batch' = 'four': must be an integer from 0 to 1,000,000"),
        ("llama-3-8b,decode,,4,-1,0,1,x", "column 'decode_ctx' = '-1'"),
        ("llama-3-8b,decode,,4,10,yes,1,x", "column 'graphed' = 'yes': must be 0 (eager) or 1 (CUDA graph)"),
        ("llama-3-8b,decode,,4,10,0,-3,x", "column 'median_ms' = '-3'"),
        ("llama-3-8b,decode,,4,10,0,,x", "column 'median_ms' = ''"),
        ("llama-3-8b,prefill,,0,0,0,1,x", "column 'prefill_lens' = '': a prefill row needs at least one prompt length"),
        ("llama-3-8b,prefill,64,2,10,0,1,x", "column 'decode_batch' = '2': a prefill row has no decodes; use kind mixed"),
        ("llama-3-8b,decode,64,2,10,0,1,x", "column 'prefill_lens' = '64': a decode row has no prompts"),
        ("llama-3-8b,mixed,64,0,0,0,1,x", "column 'decode_batch' = '0': a mixed row needs decode_batch >= 1"),
        ("llama-3-8b,prefill,64,0,0,1,1,x", "column 'graphed' = '1': only decode rows can be graphed"),
        (",decode,,1,10,0,1,x", "column 'model' = ''"),
    ],
)
def test_bad_rows_name_row_column_and_value(tmp_path, row, message):
    path = write(tmp_path, "llama-3-8b,decode,,1,10,1,7.8,ok\n" + row + "\n")
    with pytest.raises(TraceError) as err:
        read_steps_csv(path, require_measured=True)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith("steps.csv row 2")


def test_missing_columns_and_files(tmp_path):
    with pytest.raises(TraceError, match="missing column 'graphed'"):
        read_steps_csv(write(tmp_path, "x,prefill,1,0,0\n", "model,kind,prefill_lens,decode_batch,decode_ctx\n"))
    with pytest.raises(TraceError, match="missing column 'median_ms'"):
        read_steps_csv(write(tmp_path, "x,prefill,1,0,0,0\n", HEADER.replace("median_ms,", "")), require_measured=True)
    with pytest.raises(TraceError, match="has no rows"):
        read_steps_csv(write(tmp_path, ""))
    with pytest.raises(TraceError, match="cannot read steps file"):
        read_steps_csv(tmp_path / "absent.csv")


@pytest.mark.parametrize("row, column", [
    ("llama-3-8b,decode,,1000000000000000,100,0,5.0,x", "decode_batch"),  # was a MemoryError building the shape
    ("llama-3-8b,prefill,99999999999999999999999,0,0,0,17.5,x", "prefill_lens"),  # was priced at 4.6e39 ms
])
def test_step_shapes_beyond_any_engine_are_refused(tmp_path, row, column):
    from servesim.errors import TraceError
    from servesim.perf.steprows import read_steps_csv

    path = tmp_path / "steps.csv"
    path.write_text("model,kind,prefill_lens,decode_batch,decode_ctx,graphed,median_ms,note\n" + row + "\n")
    with pytest.raises(TraceError, match=f"column '{column}'"):
        read_steps_csv(path)
