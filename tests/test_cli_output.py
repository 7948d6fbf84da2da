"""What the command line writes while it waits: on a terminal every notice; in a log or a pipe
only notices that say something new, or one every 30 s, so a long wait stays a few lines."""

import io

from lib.cli import output


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_counting_notice_is_written_when_it_changes_or_every_30_s():
    stream, clock = io.StringIO(), Clock()
    notice = output.waiting(stream, clock)
    for second in range(420):                   # a 7-minute wait, a notice a second
        clock.now = float(second)
        words = "Waiting for alice's run" if second < 200 else "Waiting for bob's run"
        notice(f"{words}: {second} s so far, about {420 - second} s left")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("0 s so far, about 420 s left")
    assert any(line.startswith("Waiting for bob's run: 200 s") for line in lines)  # new words
    assert len(lines) == 7 + 8                 # 0, 30 ... 180 s; then 200 (new words), 230 ... 410
    assert all(line.startswith("Waiting for") for line in lines)


def test_on_a_terminal_every_notice_is_written(monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True
    assert output.waiting(Terminal()) is output.say
