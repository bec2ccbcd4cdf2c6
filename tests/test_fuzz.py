"""Random input for the three readers of user files: the OHLCV loader, the run loader and the
checkpoint reader. Each must return a result or raise one of the project's errors (an
ArchbenchError with a message), never a raw traceback. Example counts stay small (2 cores)."""

from __future__ import annotations

import copy
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppo_core.errors import ArchbenchError, ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures"
FUZZ = settings(
    max_examples=80,
    deadline=None,
    database=None,  # no .hypothesis/ folder left in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.just(10**400)  # JSON allows integers no float can hold
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _answers_with_a_project_error(read, *args: Any) -> None:
    """`read(*args)` returns, or raises an ArchbenchError that says something; any other
    exception fails the test with its traceback."""
    try:
        read(*args)
    except ArchbenchError as error:
        message = str(error)
    else:
        return
    assert message.strip(), "an ArchbenchError without a message"


# -- the OHLCV loader -------------------------------------------------------------------------


def _real_csv_text() -> str:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 260)))
    frame = pd.DataFrame(
        {
            "Date": pd.date_range("2020-01-01", periods=260, freq="h").astype(str),
            "Open": close,
            "High": close * 1.01,
            "Low": close * 0.99,
            "Close": close,
            "Volume": rng.integers(1, 1000, 260),
        }
    )
    return frame.to_csv(index=False)


_CSV = _real_csv_text()
_CELLS = st.sampled_from(
    ["", "nan", "inf", "-1", "0", "1e400", "x", "2020-13-45", '"', ",", "\n", "\x00", "é"]
) | st.text(max_size=6)


@settings(FUZZ)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_CSV) - 1), st.integers(0, 40), _CELLS), max_size=4
    ),
    suffix=st.sampled_from([".csv", ".csv.gz", ".parquet", ".txt"]),
)
def test_the_ohlcv_loader_answers_mutated_csv_with_a_data_error(edits, suffix):
    from ppo_core.loaders import load_ohlcv_file

    text = _CSV
    for start, length, replacement in edits:
        text = text[:start] + replacement + text[start + length :]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"bars{suffix}"
        if suffix == ".csv.gz":
            import gzip

            path.write_bytes(gzip.compress(text.encode("utf-8", "surrogatepass")))
        else:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _answers_with_a_project_error(load_ohlcv_file, path)


_HEADER_END = _CSV.index("\n") + 1


@settings(FUZZ)
@given(cut=st.integers(_HEADER_END + 1, len(_CSV) - 1))
def test_a_csv_cut_anywhere_mid_row_is_named_as_cut(cut):
    from ppo_core.loaders import load_ohlcv_file

    text = _CSV[:cut]
    last = text.rsplit("\n", 1)[-1]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bars.csv"
        path.write_text(text)
        if last and (last.count(",") < 5 or last.endswith(",")):  # the row lost fields
            with pytest.raises(DataError, match=r"^.*bars.csv: row \d+ \(the last\) is cut off"):
                load_ohlcv_file(path)
        else:  # whole rows, or whole fields (maybe a shortened number): like any other file
            _answers_with_a_project_error(load_ohlcv_file, path)


@settings(FUZZ)
@given(data=st.data())
def test_every_numeric_flag_is_refused_exactly_outside_its_range(data):
    import argparse

    from archbench.cli._common import FLAG_RANGES, check_numbers

    name = data.draw(st.sampled_from(sorted(FLAG_RANGES)))
    bound = FLAG_RANGES[name]
    value = data.draw(
        st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.sampled_from([bound.low, bound.high, 0, -1, 1])
    )
    above = value >= bound.low if bound.low_inclusive else value > bound.low
    below = value <= bound.high if bound.high_inclusive else value < bound.high
    flag = f"--{name.replace('_', '-')}"
    args = argparse.Namespace(**{name: value})
    if above and below:
        check_numbers(args)
        return
    with pytest.raises(ConfigError, match=rf"^{flag} \S+: must be in [\[(]") as caught:
        check_numbers(args)
    assert "\n" not in str(caught.value)


@settings(FUZZ)
@given(
    frame=st.lists(
        st.tuples(
            st.sampled_from(["Date", "Open", "High", "Low", "Close", "Volume", "x"]),
            st.lists(scalars, min_size=3, max_size=3),
        ),
        min_size=1,
        max_size=7,
        unique_by=lambda column: column[0],
    )
)
def test_the_ohlcv_loader_answers_random_parquet_with_a_data_error(frame):
    from ppo_core.loaders import load_ohlcv_file

    columns = {name: pd.Series(values, dtype=object).astype(str) for name, values in frame}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bars.parquet"
        pd.DataFrame(columns).to_parquet(path)
        _answers_with_a_project_error(load_ohlcv_file, path)


@settings(FUZZ)
@given(raw=st.binary(max_size=512), suffix=st.sampled_from([".csv", ".parquet", ".csv.gz"]))
def test_the_ohlcv_loader_answers_random_bytes_with_a_data_error(raw, suffix):
    from ppo_core.loaders import load_ohlcv_file

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"bars{suffix}"
        path.write_bytes(raw)
        _answers_with_a_project_error(load_ohlcv_file, path)


# -- the run loader, on mutated real runs ------------------------------------------------------


def _real_run() -> dict[str, Any]:
    data = json.loads((FIXTURES / "run-cpu-quick.json").read_text())
    # A handful of real cases of different suites keeps every example fast.
    seen, kept = set(), []
    for bench in data["benchmarks"]:
        suite = bench["extra_info"]["archbench"]["suite"]
        if suite not in seen:
            seen.add(suite)
            kept.append(bench)
    data["benchmarks"] = kept
    return data


_RUN = _real_run()


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


_RUN_PATHS = _paths(_RUN)[1:]  # every node but the root


def _mutate(data: Any, path: tuple, value: Any, delete: bool) -> None:
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


@settings(FUZZ)
@given(
    mutations=st.lists(
        st.tuples(st.sampled_from(_RUN_PATHS), json_values, st.booleans()),
        min_size=1,
        max_size=3,
    )
)
def test_the_run_loader_answers_mutated_real_runs_with_a_report_error(mutations):
    from archbench.reports.load import load_run

    data = copy.deepcopy(_RUN)
    for path, value, delete in mutations:
        try:
            _mutate(data, path, value, delete)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this node
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        _answers_with_a_project_error(load_run, path)


@settings(FUZZ)
@given(cut=st.integers(0, 4000), raw=st.binary(max_size=64))
def test_the_run_loader_answers_cut_or_spliced_json_with_a_report_error(cut, raw):
    from archbench.reports.load import load_run

    text = json.dumps(_RUN).encode()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.json"
        path.write_bytes(text[:cut] + raw + text[cut + len(raw) :])
        _answers_with_a_project_error(load_run, path)


# -- the checkpoint reader ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_checkpoint() -> bytes:
    from ppo_core import checkpoint
    from ppo_core.config import NetworkConfig
    from ppo_core.network import ActorCritic

    config = NetworkConfig(n_features=3, lookback=2, hidden_dims=(4,))
    with tempfile.TemporaryDirectory() as folder:
        path = checkpoint.save(Path(folder) / "m.pt", config, ActorCritic(config))
        return path.read_bytes()


@settings(
    FUZZ, suppress_health_check=[*FUZZ.suppress_health_check, HealthCheck.function_scoped_fixture]
)
@given(
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_the_checkpoint_reader_answers_damaged_files_with_a_checkpoint_error(
    real_checkpoint, flips, cut
):
    from ppo_core import checkpoint

    raw = bytearray(real_checkpoint)
    for offset, byte in flips:
        raw[offset % len(raw)] = byte
    if cut is not None:
        raw = raw[: cut % (len(raw) + 1)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.pt"
        path.write_bytes(bytes(raw))
        _answers_with_a_project_error(checkpoint.load, path)
        _answers_with_a_project_error(checkpoint.inspect, path)


@settings(FUZZ)
@given(payload=json_values, raw=st.binary(max_size=256))
def test_the_checkpoint_reader_answers_foreign_files_with_a_checkpoint_error(payload, raw):
    import torch

    from ppo_core import checkpoint

    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder) / "saved.pt"
        buffer = io.BytesIO()
        torch.save(payload if not isinstance(payload, dict) else {"format": payload}, buffer)
        saved.write_bytes(buffer.getvalue())
        _answers_with_a_project_error(checkpoint.load, saved)
        junk = Path(folder) / "junk.pt"
        junk.write_bytes(raw)
        _answers_with_a_project_error(checkpoint.load, junk)
