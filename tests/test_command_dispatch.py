import importlib

import pytest

from rectifiers.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"  {name} " in out


def test_unknown_command_names_the_known_ones(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "train" in err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_module_has_main_with_help(name, capsys):
    module = importlib.import_module(COMMANDS[name][0])
    assert callable(module.main)
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


# ----------------------------------------------------------------------------- error handling
@pytest.fixture
def fake_command(monkeypatch):
    """A command 'fake' whose main runs ``behaviour(argv)``; records the argv it got."""
    import sys
    import types

    calls: list[list[str]] = []
    module = types.ModuleType("rectifiers_fake_command")

    def install(behaviour):
        def fake_main(argv):
            calls.append(list(argv))
            return behaviour(argv)
        module.main = fake_main
        return calls

    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(COMMANDS, "fake", (module.__name__, "a test command"))
    # setenv (not delenv) so the teardown restores the variable even though main() sets it
    monkeypatch.setenv("RECTIFIERS_DEBUG", "0")
    return install


def _raise(exc):
    def behaviour(argv):
        raise exc
    return behaviour


def test_user_error_is_one_line_and_exit_2(fake_command, capsys):
    from rectifiers.errors import ConfigError

    fake_command(_raise(ConfigError("--lr must be > 0, got -1")))
    assert main(["fake", "--lr", "-1"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "rectifiers fake: error: --lr must be > 0, got -1\n"
    assert captured.out == ""


def test_debug_flag_shows_the_traceback_and_reaches_the_command(fake_command):
    import os

    from rectifiers.errors import UserError, debug_enabled

    seen = {}

    def behaviour(argv):
        seen["debug"] = debug_enabled()  # commands that catch their own errors ask this
        raise UserError("bad data")
    calls = fake_command(behaviour)
    with pytest.raises(UserError, match="bad data"):
        main(["fake", "--x", "1", "--debug"])
    assert calls == [["--x", "1"]]  # the flag is the dispatcher's, not the command's
    assert seen["debug"]  # set while the command ran ...
    assert os.environ["RECTIFIERS_DEBUG"] == "0"  # ... and restored afterwards


def test_debug_environment_variable(fake_command, monkeypatch):
    from rectifiers.errors import UserError

    fake_command(_raise(UserError("bad data")))
    monkeypatch.setenv("RECTIFIERS_DEBUG", "0")
    assert main(["fake"]) == 2
    monkeypatch.setenv("RECTIFIERS_DEBUG", "1")
    with pytest.raises(UserError):
        main(["fake"])


def test_a_bug_keeps_its_traceback(fake_command):
    fake_command(_raise(ZeroDivisionError("a bug")))
    with pytest.raises(ZeroDivisionError):
        main(["fake"])


def test_interrupt_exits_130(fake_command, capsys):
    fake_command(_raise(KeyboardInterrupt()))
    assert main(["fake"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_exit_code_of_the_command_is_returned(fake_command):
    fake_command(lambda argv: 3)
    assert main(["fake"]) == 3
    fake_command(lambda argv: None)
    assert main(["fake"]) == 0


def test_help_mentions_debug(capsys):
    assert main(["--help"]) == 0
    assert "--debug" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_help_mentions_debug(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "--debug" in out and "RECTIFIERS_DEBUG" in out


def test_zz_debug_does_not_leak_out_of_the_tests_above():
    import os

    assert os.environ.get("RECTIFIERS_DEBUG", "") in ("", "0")


def test_help_into_a_closed_pipe_stops_quietly():
    # `rectifiers bench --help | head -1`: the reader closes the pipe early; the command must
    # not print a BrokenPipeError traceback (exit 141 = 128 + SIGPIPE, as a shell reports).
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)  # nobody reads: the first write fails with EPIPE
    proc = subprocess.run([sys.executable, "-m", "rectifiers", "bench", "--help"], stdout=w,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(w)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    assert proc.returncode == 141
