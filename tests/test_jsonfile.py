"""User JSON files (rules, models, model cards, STAC, run.json): one reader, one-line errors naming the file."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from minescape.errors import InputError, MissingInputError
from minescape.jsonfile import read_json


def test_read_json_errors_name_the_file_and_the_problem(tmp_path):
    good = tmp_path / "ok.json"
    good.write_text('{"a": [1, 2]}', encoding="utf-8")
    assert read_json(good) == {"a": [1, 2]}
    with pytest.raises(MissingInputError, match=r"nope.json: rules file not found"):
        read_json(tmp_path / "nope.json", "rules file")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.json: model card is not valid JSON \(.*line 2 column 7"):
        read_json(bad, "model card")
    binary = tmp_path / "image.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(InputError, match="image.json: STAC file is not valid JSON"):
        read_json(binary, "STAC file")
    with pytest.raises(InputError, match="is not valid JSON"):
        read_json(tmp_path, "rules file")  # a folder
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(InputError, match=r"list.json: rules file is not a JSON object \(its top level is a list\)"):
        read_json(listed, "rules file")


def test_cli_binary_rules_file_is_a_one_line_error(tmp_path):
    from minescape.cli.app import app

    rules = tmp_path / "rules.json"
    rules.write_bytes(b"\xff\xfe\x00binary")
    res = CliRunner().invoke(app, ["lulc", "classify", str(tmp_path / "sites.gpkg"), str(tmp_path / "out"),
                                   "--scenes", str(tmp_path), "--dcm", "dcm.tif", "--dcm-year", "year.tif",
                                   "--rules", str(rules)])
    assert res.exit_code == 2, res.output
    assert "rules.json: rules file is not valid JSON" in res.output and "Traceback" not in res.output
