"""The catalogue: requests into argv lists, and the checks that keep values inside the run's work directory."""

from __future__ import annotations

import pytest

from zyrak8s_core import catalogue
from zyrak8s_core.catalogue import ArgsError, check_pipeline, check_value

FILE_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def cat() -> catalogue.Catalogue:
    return catalogue.load()


def resolve(file_id: str) -> str:
    if file_id != FILE_ID:
        raise ArgsError(f"no upload with file_id {file_id}")
    return "grid.npy"


def test_args_become_an_argv_list(cat) -> None:
    inv = cat.invocation(
        "visualize", "heatmap",
        args={"input": f"file_id:{FILE_ID}", "output": "h.png", "no-coastline": True, "no-borders": False,
              "width": 640, "extent": [-180, 180, -90, 90], "cmap": "viridis"},
        resolve_file=resolve,
    )
    assert inv.argv == [
        "visualize", "heatmap", "--input=inputs/grid.npy", "--output=h.png", "--no-coastline", "--width=640",
        "--extent=-180", "--extent=180", "--extent=-90", "--extent=90", "--cmap=viridis",
    ]
    assert [(i.file_id, i.name, i.path) for i in inv.inputs] == [(FILE_ID, "grid.npy", "inputs/grid.npy")]


def test_positionals_by_name_come_first_in_order(cat) -> None:
    inv = cat.invocation(
        "process", "convert-format", args={"output": "o.nc", "format": "netcdf", "file_or_url": f"file_id:{FILE_ID}"},
        resolve_file=resolve,
    )
    assert inv.argv == ["process", "convert-format", "inputs/grid.npy", "netcdf", "--output=o.nc"]
    # an optional positional left out before a given one would shift meanings: refused, not guessed
    with pytest.raises(ArgsError, match="in order"):
        cat.invocation("process", "convert-format", args={"format": "netcdf", "inputs": ["a.grib2"], "output-dir": "d"})


def test_option_spellings(cat) -> None:
    for key in ("no-coastline", "--no-coastline", "no_coastline"):
        assert "--no-coastline" in cat.invocation("visualize", "heatmap", args={key: True}).argv
    assert cat.invocation("process", "convert-format", argv=["x.grib2", "netcdf", "-o", "o.nc"]).argv[-2:] == ["-o", "o.nc"]


def test_aliases_run_as_given(cat) -> None:
    assert cat.invocation("render", "heatmap", args={}).argv == ["render", "heatmap"]
    assert cat.invocation("run", None, args={"config": "p.yaml"}).argv == ["run", "p.yaml"]


def test_errors_say_what_is_allowed(cat) -> None:
    with pytest.raises(ArgsError) as info:
        cat.invocation("visualize", "heatmap", args={"bogus": 1})
    assert info.value.field == "args.bogus" and "input" in info.value.allowed
    with pytest.raises(ArgsError) as info:
        cat.invocation("nope", "x")
    assert info.value.field == "stage" and "visualize" in info.value.allowed
    with pytest.raises(ArgsError, match="given twice"):
        cat.invocation("visualize", "heatmap", args={"width": 1, "--width": 2})
    with pytest.raises(ArgsError, match="too many arguments"):
        cat.invocation("visualize", "heatmap", argv=["--no-coastline"] * 600)


@pytest.mark.parametrize(
    "value",
    ["/etc/passwd", "../x", "a/../../x", "~/x", "~", "C:/x", "\\\\server\\share", "file:///x", "File:x", "x\x00y",
     "@/etc/passwd", "@../x", "@~/.netrc", "s3://bucket/../../x"],
)
def test_check_value_refuses_ways_out(value: str) -> None:
    with pytest.raises(ArgsError) as info:
        check_value(value, "args.x")
    assert info.value.field == "args.x"


@pytest.mark.parametrize(
    "value", ["h.png", "out/h.png", "inputs/a.npy", "http://host/a/b.nc", "s3://bucket/key", "@body.json", "@", "a..b", "-1.5", "50%"]
)
def test_check_value_lets_ordinary_values_through(value: str) -> None:
    check_value(value, "args.x")


def test_run_set_overrides_are_checked(cat) -> None:
    cat.invocation("run", None, argv=["p.yaml", "--set", "output=o.png"])
    for argv in (["p.yaml", "--set", "input=/etc/passwd"], ["p.yaml", "--set=input=../x"]):
        with pytest.raises(ArgsError):
            cat.invocation("run", None, argv=argv)


GOOD = b"""
name: demo
stages:
  - stage: acquire
    command: http
    args: {url: "https://example.org/data.grib2?x=1", output: data.grib2, pattern: ":TMP:2 m|\\\\.grib2$"}
  - stage: visualize
    command: heatmap
    args: {input: data.grib2, output: out/h.png, no-coastline: true, extent: [-180, 180, -90, 90]}
"""


def test_check_pipeline_accepts_a_normal_pipeline_and_workflow() -> None:
    check_pipeline(GOOD, "args.config")
    check_pipeline(b'on:\n  schedule:\n    - cron: "0 0 1 1 *"\njobs:\n  a:\n    steps:\n      - "visualize heatmap --help"\n', "w")
    check_pipeline(b'{"stages": []}', "w")


@pytest.mark.parametrize(
    "document, match",
    [
        (b"stages:\n  - {stage: disseminate, command: local, args: {input: /etc/passwd, path: p}}\n", "absolute path"),
        (b"stages:\n  - {stage: disseminate, command: local, args: {input: '${HOME}/x', path: p}}\n", "environment variables"),
        (b"stages:\n  - {stage: disseminate, command: local, args: {input: '$PWD', path: p}}\n", "environment variables"),
        (b"stages:\n  - {stage: run, command: '', args: {config: x.yaml}}\n", "run"),
        (b"jobs:\n  a:\n    steps: ['run x.yaml']\n", "run"),
        (b"jobs:\n  a:\n    steps: [[run, x.yaml]]\n", "run"),
        (b"jobs:\n  a:\n    steps: ['acquire api --url http://h/x --data @/proc/1/environ']\n", "absolute path"),
        (b"stages:\n  - {stage: x, command: y, args: {'--input=/etc/passwd': v}}\n", "absolute path"),
        (b"a: [unclosed\n", "not a YAML/JSON"),
    ],
)
def test_check_pipeline_refuses(document: bytes, match: str) -> None:
    with pytest.raises(ArgsError, match=match) as info:
        check_pipeline(document, "args.config")
    assert info.value.field == "args.config"


def test_check_pipeline_survives_alias_bombs() -> None:
    lines = ["a0: &a0 ['x', 'y']"] + [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 30)]
    check_pipeline(("\n".join(lines) + "\n").encode(), "args.config")  # 4**29 paths, 30 distinct lists
