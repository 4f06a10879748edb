"""Tests of the sampling inputs: prompts files, the official eval JSON, style-file checks, jobs and batches."""

import json

import pytest

from stylecrafter_jax.errors import DataError
from stylecrafter_jax.sampling.inputs import (SampleRequest, batch_jobs, check_style_files, expand_samples,
                                              read_eval_json, read_prompts_file, requests_from_prompts)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_prompts_file_skips_blank_lines_and_strips(tmp_path):
    path = write(tmp_path / "p.txt", "  a red circle \n\n\tblue square\nno trailing newline")
    assert read_prompts_file(path) == ["a red circle", "blue square", "no trailing newline"]


@pytest.mark.parametrize("text", ["", "\n \n\t\n"])
def test_empty_prompts_file_is_an_error_naming_it(tmp_path, text):
    path = write(tmp_path / "empty.txt", text)
    with pytest.raises(DataError, match="empty.txt.*no prompt"):
        read_prompts_file(path)


def test_prompts_file_missing_or_directory(tmp_path):
    with pytest.raises(DataError, match="nope.txt.*does not exist"):
        read_prompts_file(str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="is a directory"):
        read_prompts_file(str(tmp_path))


def test_requests_from_prompts_share_the_references():
    one = requests_from_prompts(["a", "b"], ["s.png"])
    assert one == [SampleRequest(0, "a", ("s.png",), False), SampleRequest(1, "b", ("s.png",), False)]
    several = requests_from_prompts(["a"], ["s1.png", "s2.png"])
    assert several[0].style_paths == ("s1.png", "s2.png") and several[0].listed and several[0].num_refs == 2
    with pytest.raises(DataError, match="no style image"):
        requests_from_prompts(["a"], [])
    with pytest.raises(DataError, match="no prompt"):
        requests_from_prompts([], ["s.png"])


def test_eval_json_single_and_several_references(tmp_path):
    entries = [{"prompt": "A man playing the guitar.", "style_path": "stylepic_single_ref/ink_1.png"},
               {"prompt": "A cat.", "style_path": ["multi/style4/1.jpeg", "multi/style4/2.jpeg"]},
               {"prompt": "A dog.", "style_path": ["one.png"]}]
    path = write(tmp_path / "eval.json", json.dumps(entries))
    requests = read_eval_json(path, str(tmp_path))
    assert [r.entry for r in requests] == [0, 1, 2]
    assert requests[0] == SampleRequest(0, "A man playing the guitar.",
                                        (str(tmp_path / "stylepic_single_ref/ink_1.png"),), False)
    assert requests[1].style_paths == (str(tmp_path / "multi/style4/1.jpeg"), str(tmp_path / "multi/style4/2.jpeg"))
    assert requests[1].listed and requests[2].listed and requests[2].num_refs == 1


@pytest.mark.parametrize("entry, message", [
    ({"style_path": "a.png"}, "entry 0: missing 'prompt'"),
    ({"prompt": "x"}, "entry 0: missing 'style_path'"),
    ({}, "missing 'prompt' and 'style_path'"),
    ({"prompt": 3, "style_path": "a.png"}, "\"prompt\" must be a string"),
    ({"prompt": "x", "style_path": []}, "\"style_path\" must be a path or a non-empty list"),
    ({"prompt": "x", "style_path": ["a.png", 7]}, "\"style_path\" must be"),
    ("just a string", "expected an object"),
])
def test_bad_eval_entries_name_the_file_and_entry(tmp_path, entry, message):
    path = write(tmp_path / "bad.json", json.dumps([entry]))
    with pytest.raises(DataError, match="bad.json") as info:
        read_eval_json(path, str(tmp_path))
    assert message in str(info.value)


@pytest.mark.parametrize("text, message", [("[]", "empty"), ("{\"prompt\": \"x\"}", "expected a non-empty list"),
                                           ("[{\"prompt\": ", "not valid JSON")])
def test_bad_eval_json_documents(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_eval_json(write(tmp_path / "e.json", text), str(tmp_path))


def test_eval_root_must_be_a_directory(tmp_path):
    path = write(tmp_path / "e.json", "[]")
    with pytest.raises(DataError, match="eval root .*not a directory"):
        read_eval_json(path, str(tmp_path / "missing"))


def test_check_style_files_names_missing_and_directories(tmp_path):
    (tmp_path / "ok.png").write_bytes(b"x")
    check_style_files(requests_from_prompts(["a"], [str(tmp_path / "ok.png")]))
    with pytest.raises(DataError, match="gone.png.*does not exist"):
        check_style_files(requests_from_prompts(["a"], [str(tmp_path / "ok.png"), str(tmp_path / "gone.png")]))
    with pytest.raises(DataError, match="is a directory, expected an image file"):
        check_style_files(requests_from_prompts(["a"], [str(tmp_path)]))


def test_expand_samples_numbers_the_run_request_major():
    requests = requests_from_prompts(["a", "b"], ["s.png"])
    jobs = expand_samples(requests, 3)
    assert [(j.request.entry, j.sample, j.index) for j in jobs] == [
        (0, 0, 0), (0, 1, 1), (0, 2, 2), (1, 0, 3), (1, 1, 4), (1, 2, 5)]
    with pytest.raises(DataError, match="samples per prompt"):
        expand_samples(requests, 0)


def test_batches_are_contiguous_and_split_where_the_reference_count_changes():
    requests = [SampleRequest(i, "p", ("s",) * n, n > 1) for i, n in enumerate([1, 1, 1, 2, 2, 1])]
    batches = batch_jobs(expand_samples(requests), 2)
    assert [[j.index for j in batch] for batch in batches] == [[0, 1], [2], [3, 4], [5]]
    with pytest.raises(DataError, match="batch size"):
        batch_jobs(expand_samples(requests), 0)
