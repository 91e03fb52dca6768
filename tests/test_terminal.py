"""Whether a stream is a terminal: fit's text display and the CLI decide how to draw from it."""

import io

from jupyter_torchlab._terminal import is_tty


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_a_pipe_and_a_closed_stream():
    assert is_tty(Tty())
    assert not is_tty(io.StringIO())  # a pipe or a log
    assert not is_tty(object())  # no isatty at all
    closed = io.StringIO()
    closed.close()  # its isatty() raises ValueError
    assert not is_tty(closed)
