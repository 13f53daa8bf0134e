"""CI runs what a newcomer runs: .ci/run takes the README's two commands from the README itself."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
spec = importlib.util.spec_from_file_location("readme_commands", ROOT / ".ci" / "readme_commands.py")
readme_commands = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_commands)


def test_the_readme_has_both_commands_in_the_form_ci_runs_them():
    readme = (ROOT / "README.md").read_text()
    main = readme_commands.command(readme, "main")
    test = readme_commands.command(readme, "test")
    assert main.startswith("pip install") and main.endswith("ktae train")   # .ci/run appends a short run's options
    assert test.startswith("pip install") and "-m pytest" in test
    assert "[test]" in test and "[test]" not in main


def test_ci_runs_the_readme_commands_in_one_fresh_environment():
    script = (ROOT / ".ci" / "run").read_text()
    assert "readme_commands.py main" in script and "readme_commands.py test" in script
    assert script.index("python3 -m venv") < script.index('eval "$main_job') < script.index('eval "$test_command"')


def test_a_readme_without_the_block_is_an_error():
    with pytest.raises(ValueError, match="no ```bash block"):
        readme_commands.command("Run the tests: nothing here", "test")
