"""Print one of the README's two set-up commands, as the README writes it: `main` (install and run the main job)
or `test` (run the tests). .ci/run runs what this prints, so that CI runs exactly what a newcomer copies."""
import re
import sys
from pathlib import Path

#: the sentence before each command's code block in the README
LEAD = {"main": "Install and run the main job", "test": "Run the tests"}


def command(readme: str, which: str) -> str:
    """The first ```bash block after the README's sentence for ``which``, as one line."""
    start = readme.index(LEAD[which])
    block = re.search(r"```bash\n(.*?)```", readme[start:], re.S)
    if block is None:
        raise ValueError(f"README.md: no ```bash block after {LEAD[which]!r}")
    lines = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    return " && ".join(line for line in lines if line)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in LEAD:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(LEAD)}}}")
    print(command((Path(__file__).parent.parent / "README.md").read_text(), sys.argv[1]))
