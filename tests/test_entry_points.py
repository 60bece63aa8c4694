"""The package's command-line entry points, as a user meets them first: their help."""

import importlib

import pytest

COMMANDS = {  # what a user types after `python -m` -> the function that parses it
    "anomalib_adapted_moe.demo": "anomalib_adapted_moe.demo",
    "anomalib_adapted_moe.viz.make_figures": "anomalib_adapted_moe.viz.make_figures",
    "anomalib_adapted_moe.data.synthetic.contact_sheet": "anomalib_adapted_moe.data.synthetic.contact_sheet",
    "anomalib_adapted_moe.data.real_textures": "anomalib_adapted_moe.data.real_textures.build",
    "anomalib_adapted_moe.data.texture_ad": "anomalib_adapted_moe.data.texture_ad.check",
    "anomalib_adapted_moe.deploy.variant_level": "anomalib_adapted_moe.deploy.variant_level",
    "anomalib_adapted_moe.benchmark": "anomalib_adapted_moe.benchmark.__main__",
    "anomalib_adapted_moe.benchmark speed": "anomalib_adapted_moe.benchmark.__main__",
    "anomalib_adapted_moe.benchmark precision": "anomalib_adapted_moe.benchmark.__main__",
    "anomalib_adapted_moe.benchmark thresholds": "anomalib_adapted_moe.benchmark.__main__",
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_names_itself_as_it_is_run_in_its_help(command: str, capsys: pytest.CaptureFixture) -> None:
    """`--help` and argument errors say `python -m <module>`, the way the README runs it, not `__main__.py`."""
    main = importlib.import_module(COMMANDS[command]).main
    with pytest.raises(SystemExit) as stopped:
        main([*command.split()[1:], "--help"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m {command}")
