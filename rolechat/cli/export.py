"""`rolechat export vllm|sglang`: the command that serves the base model and every persona adapter on
another engine, with the adapters it cannot serve and why; then `--backend openai` points rolechat at it."""

from __future__ import annotations

import json

import typer

from rolechat.cli.common import build, console, err_console, fail
from rolechat.cli.options import Overrides, config_flags

ENGINES = ("vllm", "sglang")


def register(app: typer.Typer) -> None:
    @app.command("export")
    @config_flags("llm")
    def export(
        engine: str = typer.Argument(..., help="vllm or sglang."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address the engine listens on."),
        port: int = typer.Option(8001, "--port", help="Port the engine listens on."),
        dtype: str = typer.Option("auto", "--dtype", help="vLLM --dtype (float32 for CPU builds)."),
        as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
        config: Overrides | None = None,
    ) -> None:
        """Print the command that serves the base model and every persona on vLLM (multi-LoRA) or SGLang."""
        from rolechat.llm.export import serving_plan
        from rolechat.llm.loader import LoadError

        if engine not in ENGINES:
            fail(f"unknown engine {engine!r}: choose {' or '.join(ENGINES)}")
        cfg = build("llm", config["llm"])
        try:
            plan = serving_plan(cfg)
        except (LoadError, OSError, ValueError) as exc:
            fail(str(exc))
        if engine == "vllm":
            argv, command = (
                plan.vllm_args(host=host, port=port, dtype=dtype),
                plan.vllm_command(host=host, port=port, dtype=dtype),
            )
        else:
            argv, command = plan.sglang_args(host=host, port=port), plan.sglang_command(host=host, port=port)
        use = (
            f"ROLECHAT_LLM_BACKEND=openai ROLECHAT_LLM_BASE_URL=http://{host}:{port}/v1 ROLECHAT_LLM_MODEL={plan.base}"
        )
        if as_json:
            data = {
                "engine": engine,
                "command": command,
                "args": argv,
                "served_model": plan.served_name,
                "adapters": {n: str(p) for n, p in plan.adapters.items()},
                "refused": [{"persona": n, "reason": r} for n, r in plan.refused],
                "rolechat_env": use,
            }
            console.print_json(json.dumps(data, ensure_ascii=False))
            return
        typer.echo(command)
        for name, reason in plan.refused:
            err_console.print(f"not exported: {name}: {reason}", style="yellow", markup=False, highlight=False)
        err_console.print(f"then: {use} rolechat chat --persona NAME", style="dim", markup=False, highlight=False)
