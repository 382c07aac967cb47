"""input_file parts of /v1/responses: text files become prompt text, the rest a 400 naming
the part (codexpool/openai/input_files.py, through responses.to_chat_body)."""

from __future__ import annotations

import base64

import pytest

from codexpool.errors import ApiError
from codexpool.openai.responses import to_chat_body


def body(part: dict) -> dict:
    content = [{"type": "input_text", "text": "Read this."}, part]
    return {"model": "gpt-5.5", "input": [{"role": "user", "content": content}]}


def data_url(raw: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(raw).decode()}"


@pytest.mark.parametrize("media_type", ["text/plain", "text/markdown", "application/json", ""])
def test_text_files_are_inlined_with_their_name(media_type: str) -> None:
    part = {
        "type": "input_file",
        "filename": "a.md",
        "file_data": data_url(b"# Notes\n", media_type),
    }
    content = to_chat_body(body(part))["messages"][0]["content"]
    assert content == "Read this.\n<file name='a.md'>\n# Notes\n\n</file>"


def test_raw_base64_without_a_data_url_is_taken() -> None:
    part = {
        "type": "input_file",
        "filename": "x.csv",
        "file_data": base64.b64encode(b"a,b").decode(),
    }
    assert "a,b" in to_chat_body(body(part))["messages"][0]["content"]


@pytest.mark.parametrize(
    ("part", "words"),
    [
        ({"file_id": "file-abc"}, "file_id"),
        ({"file_url": "https://example.com/a.pdf"}, "file_url"),
        (
            {"filename": "a.pdf", "file_data": data_url(b"%PDF-1.4", "application/pdf")},
            "application/pdf",
        ),
        (
            {
                "filename": "a.bin",
                "file_data": data_url(b"\x00\xff\xfe", "application/octet-stream"),
            },
            "UTF-8",
        ),
        ({"filename": "a.txt", "file_data": "data:text/plain;base64,@@@"}, "base64"),
        ({"filename": "a.txt"}, "file_data"),
    ],
)
def test_other_files_are_a_400_naming_the_part(part: dict, words: str) -> None:
    with pytest.raises(ApiError) as info:
        to_chat_body(body({"type": "input_file", **part}))
    assert info.value.status == 400 and words in info.value.message
    assert info.value.param == "input[0].content[1]"


def test_chat_file_parts_take_the_same_path() -> None:
    """Chat completions' `file` parts (the SDKs' shape for files) are inlined the same way."""
    from codexpool.openai.translate import parse_chat_request

    text = {"filename": "n.txt", "file_data": data_url(b"launch code 4242", "text/plain")}
    content = [{"type": "text", "text": "Read."}, {"type": "file", "file": text}]
    req = parse_chat_request(
        {"model": "gpt-5.5", "messages": [{"role": "user", "content": content}]}, lambda m: m
    )
    assert "<file name='n.txt'>\nlaunch code 4242\n</file>" in req.prompt
    pdf = {"filename": "p.pdf", "file_data": data_url(b"%PDF", "application/pdf")}
    content[1] = {"type": "file", "file": pdf}
    with pytest.raises(ApiError) as info:
        parse_chat_request(
            {"model": "gpt-5.5", "messages": [{"role": "user", "content": content}]}, lambda m: m
        )
    assert info.value.param == "messages[0].content[1]" and "application/pdf" in info.value.message
