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
