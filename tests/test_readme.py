"""The README's code runs as written and prints what it says."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_training_example_ranks_the_two_wrong_masks_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    exec(_blocks()[0], namespace)
    report = namespace["monitor"].report
    assert report.indexes.tolist() == list(range(16, 24))
    assert set(report.suspects("softmin", k=2).tolist()) == {17, 22}
    assert (tmp_path / "lightning_logs" / "version_0" / "label_quality.json").exists()


def test_readme_metric_example_finds_the_corrupted_images(capsys):
    namespace: dict = {"__name__": "__main__"}
    exec(_blocks()[1], namespace)
    found = set(namespace["report"].suspects("softmin", k=8).tolist())
    assert found == {0, 1, 16, 17, 32, 33, 48, 49}
    assert "tensor(" in capsys.readouterr().out


def test_readme_names_two_setup_commands():
    text = README.read_text()
    setup = text[text.index("## Set up") : text.index("## Use it")]
    commands = re.findall(r"```bash\n(.*?)```", setup, re.S)
    assert [c.strip() for c in commands] == [
        'pip install -e ".[demo]" && segqa demo',
        'pip install -e ".[dev]" && python -m pytest -q',
    ]
