"""The one live-line writer: fit's text display, tl.progress's text bars and the CLI share it."""

import io

from jupyter_torchlab._terminal import LineWriter, is_tty


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_one_live_line_is_redrawn_with_a_carriage_return_and_padding():
    out = Tty()
    w = LineWriter(out)
    w.live("epoch 1 12%")
    w.live("epoch 1 9%")  # shorter: padded over the old text
    assert out.getvalue() == "\repoch 1 12%\repoch 1 9% "
    assert w.has_live_line
    w.finish("epoch 1 done")
    assert out.getvalue().endswith("\repoch 1 done\n")
    assert not w.has_live_line
    assert "\x1b" not in out.getvalue()  # one line: no escape sequences


def test_several_live_lines_use_cursor_movement_and_collapse_back_to_one():
    out = Tty()
    w = LineWriter(out)
    w.show(["outer 1/2", "inner 3/10"])
    assert out.getvalue() == "outer 1/2\ninner 3/10\x1b[1A\r"
    w.show(["outer 2/2"])  # the inner bar ended: both lines erased, one drawn
    assert out.getvalue().endswith("\r\x1b[2K\n\x1b[2K\x1b[1A\router 2/2\r")
    w.clear()
    assert not w.has_live_line


def test_a_line_above_takes_the_live_line_off_and_puts_it_back():
    out = Tty()
    w = LineWriter(out)
    w.live("3/10")
    w.above("checkpoint saved", redraw="4/10")
    assert out.getvalue() == "\r3/10\r    \rcheckpoint saved\n\r4/10"


def test_a_pipe_gets_whole_lines_and_no_control_characters():
    out = io.StringIO()
    w = LineWriter(out)
    assert not is_tty(out)
    assert not w.dynamic
    w.live("1/3")
    w.show(["ignored on a pipe"])
    w.live("2/3")
    w.above("note")
    w.finish("3/3 done")
    w.clear()
    assert out.getvalue() == "1/3\n2/3\nnote\n3/3 done\n"
    assert not w.has_live_line


def test_a_closed_stream_is_not_a_terminal():
    out = io.StringIO()
    out.close()  # its isatty() raises ValueError
    assert not is_tty(out)
    assert not is_tty(object())  # no isatty at all
