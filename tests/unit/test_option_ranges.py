"""Every numeric option is range-checked before anything is built: usage errors (rc 2) that
say the range, never a compiler's output or a run that never ends."""

from __future__ import annotations

import pytest

from tracer.cli import main
from tracer.model.options import RINGBUF_PAGES_MAX, STORM_LIMIT_MAX, Options


@pytest.mark.parametrize("args, text", [
    (["--duration", "nan"], "finite number of seconds"),
    (["--duration", "inf"], "finite number of seconds"),
    (["--duration", "-1"], "above 0"),
    (["--duration", "0"], "above 0"),
    (["--duration", "1e400"], "finite number of seconds"),
    (["--duration", "soon"], "not a number of seconds"),
    (["--ringbuf-pages", "3"], "power of two"),
    (["--ringbuf-pages", "0"], "1<=x<=65536"),
    (["--ringbuf-pages", str(2 * RINGBUF_PAGES_MAX)], "1<=x<=65536"),
    (["--storm-limit", "9"], "10<=x<=1000000"),
    (["--storm-limit", str(10 ** 12)], "10<=x<=1000000"),
    (["--max-events", "0"], "1<=x"),
    (["--max-events", "9" * 30], "1<=x"),
    (["exporter", "--duration", "nan"], "finite number of seconds"),
    (["exporter", "--top-processes", "0"], "1<=x<=10000"),
])
def test_out_of_range_numbers_are_usage_errors(capsys, args, text):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err


@pytest.mark.parametrize("kw", [{"ringbuf_pages": 2 * RINGBUF_PAGES_MAX}, {"ringbuf_pages": 6},
                                {"storm_limit": STORM_LIMIT_MAX + 1}, {"storm_limit": 9}])
def test_options_refuse_what_the_cli_refuses(kw):
    with pytest.raises(ValueError):
        Options(**kw)
