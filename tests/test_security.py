"""Security: weights only from safetensors or ``torch.load(weights_only=True)``, ``trust_remote_code`` off unless
turned on, nothing from a file or config evaluated as code (a source scan of the package, and a real malicious
pickle refused)."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import torch

from querit_st.utils import QueritInputError, load_torch_weights

PACKAGE = Path(__file__).resolve().parents[1] / "querit_st"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _dotted(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return f"{_dotted(func.value)}.{func.attr}"
    return ""


def _kw(call: ast.Call, name: str) -> object:
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<expr>"
    return "<missing>"


def test_source_scan_no_unsafe_loading_or_eval():
    assert len(SOURCES) > 10
    problems: list[str] = []
    torch_loads = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _calls(tree):
            name, where = _dotted(call.func), f"{path.name}:{call.lineno}"
            if name == "torch.load":
                torch_loads.append(where)
                if _kw(call, "weights_only") is not True:
                    problems.append(f"{where}: torch.load without weights_only=True")
            elif name in ("eval", "exec", "compile", "builtins.eval", "builtins.exec"):
                problems.append(f"{where}: {name}()")
            elif name.split(".")[0] in ("pickle", "cloudpickle", "dill", "marshal", "joblib") and name.endswith(
                    ("load", "loads")):
                problems.append(f"{where}: {name}()")
            elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all"):
                problems.append(f"{where}: {name}() (only yaml.safe_load)")
            elif name in ("np.load", "numpy.load") and _kw(call, "allow_pickle") is not False:
                problems.append(f"{where}: np.load without allow_pickle=False")
        # trust_remote_code: a parameter defaults to False (or has no default: the caller decides); a literal True
        # only inside a function that takes the caller's trust_remote_code (forwarding its explicit choice)
        deciding: set[int] = set()
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            args = fn.args.args + fn.args.kwonlyargs
            defaults = [None] * (len(fn.args.args) - len(fn.args.defaults)) + fn.args.defaults + fn.args.kw_defaults
            for arg, default in zip(args, defaults):
                if arg.arg != "trust_remote_code":
                    continue
                deciding |= {c.lineno for c in _calls(fn)}
                if default is not None and not (isinstance(default, ast.Constant) and default.value is False):
                    problems.append(f"{path.name}:{fn.lineno}: {fn.name}(trust_remote_code=...) must default to False")
        for call in _calls(tree):
            if _kw(call, "trust_remote_code") is True and call.lineno not in deciding:
                problems.append(f"{path.name}:{call.lineno}: trust_remote_code=True hard-coded")
    assert not problems, problems
    assert torch_loads == [f"io.py:{_line_of_torch_load()}"]  # every pickled weights file goes through one helper


def _line_of_torch_load() -> int:
    tree = ast.parse((PACKAGE / "utils" / "io.py").read_text(encoding="utf-8"))
    return next(c.lineno for c in _calls(tree) if _dotted(c.func) == "torch.load")


class _Payload:
    """Unpickling this object would call ``open(marker, "w")``: the file appearing means code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, tiny_cross_encoder_dir, capsys):
    from querit_st.cli import main as cli_main

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil"
    shutil.copytree(tiny_cross_encoder_dir, evil)
    from safetensors.torch import load_file

    state = load_file(str(evil / "model.safetensors"))
    (evil / "model.safetensors").unlink()
    torch.save({**state, "payload": _Payload(marker)}, evil / "pytorch_model.bin")
    with pytest.raises(QueritInputError, match="weights_only=True"):
        load_torch_weights(evil / "pytorch_model.bin")
    out = tmp_path / "merged"
    assert cli_main(["merge", str(tiny_cross_encoder_dir), str(evil), "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pytorch_model.bin" in err[0] and "weights_only=True" in err[0], err
    assert not marker.exists() and not out.exists()
    # the same tensors without the payload load fine (a plain .bin is accepted, only code is refused)
    torch.save(state, evil / "pytorch_model.bin")
    assert load_torch_weights(evil / "pytorch_model.bin").keys() == state.keys()
