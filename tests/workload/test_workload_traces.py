"""Trace readers on tiny hand-made files: exact arrays, skip reasons, error messages."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from servesim.errors import TraceError
from servesim.workload.traces import detect_format, read_trace


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- azure

AZURE_2023 = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.2224670,879,55
"""


def test_azure_2023_exact_arrays(tmp_path):
    w = read_trace(write(tmp_path, "a.csv", AZURE_2023))
    np.testing.assert_allclose(w.arrival_s, [0.0, 4.314579, 4.541877], atol=1e-9)
    assert w.prompt_tokens.tolist() == [374, 396, 879]
    assert w.output_tokens.tolist() == [44, 109, 55]
    assert w.priority.tolist() == [0, 0, 0]
    assert w.arrival_s.dtype == np.float64 and w.prompt_tokens.dtype == np.int64
    assert w.skipped == {}
    assert w.session_id is None and w.prefix_block_ids is None


def test_azure_2024_offsets_with_and_without_fraction(tmp_path):
    text = (
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00+00:00,10,1\n"
        "2024-05-10 00:00:00.250000+00:00,20,2\n"
        "2024-05-10 00:00:02+00:00,30,3\n"
    )
    path = write(tmp_path, "b.csv", text)
    assert detect_format(path) == "azure2024"
    w = read_trace(path)
    np.testing.assert_allclose(w.arrival_s, [0.0, 0.25, 2.0])
    assert w.prompt_tokens.tolist() == [10, 20, 30]


def test_azure_iso_z_and_naive_t(tmp_path):
    text = (
        "TIMESTAMP,ContextTokens,GeneratedTokens,NumImages\n"
        "2025-01-01T00:00:01Z,5,6,0\n"
        "2025-01-01T00:00:03.5Z,7,8,2\n"
    )
    w = read_trace(write(tmp_path, "c.csv", text), format="azure2024")
    np.testing.assert_allclose(w.arrival_s, [0.0, 2.5])
    assert w.output_tokens.tolist() == [6, 8]


def test_azure_nonutc_offset_is_applied(tmp_path):
    text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 02:00:00+02:00,1,1\n2024-05-10 00:00:10+00:00,1,1\n"
    w = read_trace(write(tmp_path, "d.csv", text))
    np.testing.assert_allclose(w.arrival_s, [0.0, 10.0])


def test_azure_unsorted_rows_are_sorted(tmp_path):
    text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 00:00:05,1,2\n2023-11-16 00:00:01,3,4\n"
    w = read_trace(write(tmp_path, "e.csv", text))
    np.testing.assert_allclose(w.arrival_s, [0.0, 4.0])
    assert w.prompt_tokens.tolist() == [3, 1]


AZURE_BAD = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 00:00:00.0000000,100,10
2023-11-16 00:00:01.0000000,100,0
yesterday,100,10
2023-11-16 00:00:02.0000000,0,10

2023-11-16 00:00:03.0000000,abc,10
2023-11-16 00:00:04.0000000,-5,10
2023-11-16 00:00:05.0000000,,10
2023-11-16 00:00:06.0000000,100
2023-11-16 00:00:07.0000000,12.5,10
2023-02-30 00:00:08.0000000,100,10
2023-11-16 00:00:09.0000000,100,0
2023-11-16 00:00:10.0000000,200,20
"""


def test_azure_bad_rows_counted_by_reason(tmp_path):
    w = read_trace(write(tmp_path, "bad.csv", AZURE_BAD))
    assert w.skipped == {
        "wrong_column_count": 1,
        "zero_output_tokens": 2,
        "unparseable_timestamp": 2,
        "zero_prompt_tokens": 1,
        "unparseable_number": 2,
        "negative_value": 1,
        "missing_field": 1,
    }
    np.testing.assert_allclose(w.arrival_s, [0.0, 10.0])
    assert w.prompt_tokens.tolist() == [100, 200]
    # 12 data rows (blank line ignored): 2 kept + 10 skipped
    assert len(w) + sum(w.skipped.values()) == 12


@pytest.mark.parametrize(
    "row, line_fragment",
    [
        ("2023-11-16 00:00:01,100,0", "line 3, column 'GeneratedTokens': value '0'"),
        ("yesterday,100,10", "line 3, column 'TIMESTAMP': value 'yesterday'"),
        ("2023-11-16 00:00:01,abc,10", "line 3, column 'ContextTokens': value 'abc'"),
        ("2023-11-16 00:00:01,-5,10", "line 3, column 'ContextTokens': value '-5'"),
    ],
)
def test_azure_on_bad_row_error_names_line_column_value(tmp_path, row, line_fragment):
    path = write(tmp_path, "bad.csv", f"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 00:00:00,1,1\n{row}\n")
    with pytest.raises(TraceError) as info:
        read_trace(path, on_bad_row="error")
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and line_fragment in message
    assert "expected" in message


def test_azure_error_reports_earliest_bad_row_including_malformed(tmp_path):
    path = write(tmp_path, "bad.csv", AZURE_BAD)
    with pytest.raises(TraceError, match=r"line 3, column 'GeneratedTokens': value '0'"):
        read_trace(path, on_bad_row="error")
    # Only a malformed row (after a blank line): its own message, right line.
    path = write(tmp_path, "short.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 00:00:00,1,1\n\n2023-11-16 00:00:01,1\n")
    with pytest.raises(TraceError, match=r"line 4: 2 fields where the header has 3"):
        read_trace(path, on_bad_row="error")


def test_azure_line_numbers_count_blank_lines(tmp_path):
    text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 00:00:00,1,1\n\n\n2023-11-16 00:00:01,0,1\n"
    with pytest.raises(TraceError, match=r"line 5, column 'ContextTokens'"):
        read_trace(write(tmp_path, "blank.csv", text), on_bad_row="error")


def test_error_mode_on_clean_file_equals_skip_mode(tmp_path):
    path = write(tmp_path, "a.csv", AZURE_2023)
    a, b = read_trace(path), read_trace(path, on_bad_row="error")
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    np.testing.assert_array_equal(a.output_tokens, b.output_tokens)


def test_azure_missing_column(tmp_path):
    path = write(tmp_path, "x.csv", "TIMESTAMP,ContextTokens\n2023-11-16 00:00:00,1\n")
    with pytest.raises(TraceError, match="has no column 'GeneratedTokens'"):
        read_trace(path, format="azure2023")


# --------------------------------------------------------------------------- burstgpt

BURST_V1 = """Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,0,1087,Conversation log
46,GPT-4,417,276,693,API log
47,ChatGPT,0,0,0,Conversation log
50.5,GPT-4,300,20,320,Conversation log
"""

BURST_V2 = """Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type
5,s1,2.5,ChatGPT,472,18,490,Conversation log
45,s1,1.0,ChatGPT,1087,0,1087,Conversation log
46,,3.0,GPT-4,417,276,693,API log
47,s2,0.1,ChatGPT,0,0,0,Conversation log
50.5,s3,1.2,GPT-4,300,20,320,Conversation log
"""


@pytest.mark.parametrize("text", [BURST_V1, BURST_V2], ids=["v1", "v2"])
def test_burstgpt_both_layouts(tmp_path, text):
    path = write(tmp_path, "burst.csv", text)
    assert detect_format(path) == "burstgpt"
    w = read_trace(path)
    np.testing.assert_allclose(w.arrival_s, [0.0, 41.0, 45.5])
    assert w.prompt_tokens.tolist() == [472, 417, 300]
    assert w.output_tokens.tolist() == [18, 276, 20]
    assert w.model.tolist() == ["ChatGPT", "GPT-4", "GPT-4"]
    # The failed 0/0 row counts as failed, not as a zero prompt.
    assert w.skipped == {"failed_request": 2}


def test_burstgpt_v2_session_ids(tmp_path):
    w = read_trace(write(tmp_path, "burst.csv", BURST_V2))
    assert w.session_id.tolist() == ["s1", None, "s3"]
    assert read_trace(write(tmp_path, "v1.csv", BURST_V1)).session_id is None


def test_burstgpt_keep_failed(tmp_path):
    w = read_trace(write(tmp_path, "burst.csv", BURST_V1), burstgpt_failed="keep")
    # The 0/0 row still has no prompt; the failed 1087-token prompt is kept with 1 output token.
    assert w.prompt_tokens.tolist() == [472, 1087, 417, 300]
    assert w.output_tokens.tolist() == [18, 1, 276, 20]
    assert w.skipped == {"zero_prompt_tokens": 1}


def test_burstgpt_filters_have_their_own_reasons(tmp_path):
    path = write(tmp_path, "burst.csv", BURST_V2)
    w = read_trace(path, burstgpt_model="gpt-4")
    assert w.prompt_tokens.tolist() == [417, 300]
    assert w.skipped == {"model_filtered": 3}
    w = read_trace(path, burstgpt_model="GPT-4", burstgpt_log_type="Conversation log")
    assert w.prompt_tokens.tolist() == [300]
    np.testing.assert_allclose(w.arrival_s, [0.0])
    assert w.skipped == {"model_filtered": 3, "log_type_filtered": 1}


def test_burstgpt_error_mode_ignores_rows_left_out_by_choice(tmp_path):
    path = write(tmp_path, "burst.csv", BURST_V1)
    w = read_trace(path, on_bad_row="error")  # failed rows are skipped by choice, no error
    assert len(w) == 3
    with pytest.raises(TraceError, match=r"line 5, column 'Request tokens': value '0'.*zero_prompt_tokens"):
        read_trace(path, on_bad_row="error", burstgpt_failed="keep")


def test_burstgpt_bad_timestamp(tmp_path):
    text = BURST_V1 + "soon,ChatGPT,10,10,20,API log\n-3,ChatGPT,10,10,20,API log\n"
    w = read_trace(write(tmp_path, "burst.csv", text))
    assert w.skipped == {"failed_request": 2, "unparseable_number": 1, "negative_value": 1}


def test_burstgpt_filter_needs_column(tmp_path):
    text = "Timestamp,Request tokens,Response tokens\n1,2,3\n"
    with pytest.raises(TraceError, match="no 'Model' column"):
        read_trace(write(tmp_path, "b.csv", text), burstgpt_model="ChatGPT")


# --------------------------------------------------------------------------- mooncake

MOONCAKE = """{"timestamp": 1000, "input_length": 1024, "output_length": 10, "hash_ids": [0, 1]}
{"timestamp": 1000, "input_length": 600, "output_length": 5, "hash_ids": [0, 2]}

{"timestamp": 4500, "input_length": 100, "output_length": 0, "hash_ids": [3]}
{"timestamp": 4000, "input_length": 513, "output_length": 7, "hash_ids": [0, 1]}
not json
{"timestamp": 5000, "output_length": 7, "hash_ids": [9]}
{"timestamp": 5000, "input_length": 7, "output_length": 7, "hash_ids": [-1]}
{"timestamp": "late", "input_length": 7, "output_length": 7}
{"timestamp": 6000, "input_length": 7, "output_length": 7}
"""


def test_mooncake_arrays_and_hash_ids(tmp_path):
    path = write(tmp_path, "m.jsonl", MOONCAKE)
    assert detect_format(path) == "mooncake"
    w = read_trace(path)
    np.testing.assert_allclose(w.arrival_s, [0.0, 0.0, 3.0, 5.0])
    assert w.prompt_tokens.tolist() == [1024, 600, 513, 7]
    assert w.output_tokens.tolist() == [10, 5, 7, 7]
    assert w.prefix_block_ids == [(0, 1), (0, 2), (0, 1), ()]
    assert w.prefix_block_size == 512
    assert w.skipped == {
        "zero_output_tokens": 1,
        "invalid_json": 1,
        "missing_field": 1,
        "bad_hash_ids": 1,
        "unparseable_number": 1,
    }


def test_mooncake_error_mode(tmp_path):
    path = write(tmp_path, "m.jsonl", MOONCAKE)
    with pytest.raises(TraceError, match=r"m\.jsonl line 4, column 'output_length': value '0'"):
        read_trace(path, on_bad_row="error")


# --------------------------------------------------------------------------- whole-file errors


def test_missing_file(tmp_path):
    with pytest.raises(TraceError, match="trace file not found"):
        read_trace(tmp_path / "nope.csv")


def test_unknown_builtin():
    with pytest.raises(TraceError, match="unknown builtin trace 'builtin:nope'.*builtin:azure-2023-conv"):
        read_trace("builtin:nope")


def test_undetectable_format(tmp_path):
    with pytest.raises(TraceError, match="cannot tell the format"):
        read_trace(write(tmp_path, "x.csv", "a,b,c\n1,2,3\n"))


def test_unknown_format_name(tmp_path):
    with pytest.raises(TraceError, match="unknown trace format 'parquet'"):
        read_trace(write(tmp_path, "a.csv", AZURE_2023), format="parquet")


def test_empty_file(tmp_path):
    with pytest.raises(TraceError, match="is empty"):
        read_trace(write(tmp_path, "e.csv", ""), format="azure2023")


@pytest.mark.parametrize(
    "name, text",
    [
        ("z.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 00:00:00,1,0\n"),
        ("h.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"),
        ("z.jsonl", '{"timestamp": 0, "input_length": 0, "output_length": 1}\n'),
    ],
)
def test_no_usable_row(tmp_path, name, text):
    with pytest.raises(TraceError, match="has no usable row") as info:
        read_trace(write(tmp_path, name, text))
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- packaged trace


def test_builtin_azure_trace_reads_fast_and_whole():
    read_trace("builtin:azure-2023-conv")  # warm imports and the page cache
    start = time.perf_counter()
    w = read_trace("builtin:azure-2023-conv")
    elapsed = time.perf_counter() - start
    assert len(w) == 19366 and w.skipped == {}
    assert w.source == "azure:builtin:azure-2023-conv"
    assert w.arrival_s[0] == 0.0 and np.all(np.diff(w.arrival_s) >= 0)
    assert w.prompt_tokens[:2].tolist() == [374, 396] and w.output_tokens[:2].tolist() == [44, 109]
    assert elapsed < 0.5, f"reading the packaged trace took {elapsed:.3f} s"
