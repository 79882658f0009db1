"""The ``coda-lite`` command.

    coda-lite demo                              # the shipped script, spoken and recognized
    coda-lite demo --text                       # the same lines typed (recognition skipped)
    coda-lite demo --open-vocabulary            # heard by the language model, not the
                                                # grammar of the script's lines
    coda-lite demo --script my.txt --turns 3    # one utterance per line ('#' lines skipped)
    coda-lite demo --audio q1.wav q2.wav        # each WAV is one spoken turn
    coda-lite serve --host 127.0.0.1 --port 8765 [--allow-fault-injection]

Every sub-command takes ``--config FILE`` (else ``$CODA_CONFIG``); ``CODA_*`` variables override.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from coda_lite.config import Config, ConfigError, load_config
from coda_lite.pipeline.conversation import STAGES, StageError
from coda_lite.speech.wer import word_error_rate, word_errors


def default_script() -> list[str]:
    text = resources.files("coda_lite").joinpath("data/default_script.txt").read_text("utf-8")
    return _lines(text)


def _lines(text: str) -> list[str]:
    return [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def demo_turns(args: argparse.Namespace) -> list[str | Path]:
    turns: list[str | Path] = []
    if args.script:
        try:
            turns.extend(_lines(Path(args.script).read_text(encoding="utf-8")))
        except OSError as exc:
            raise ConfigError(f"cannot read script {args.script}: {exc.strerror or exc}") from None
    for wav in args.audio or []:
        turns.append(Path(wav))
    if not args.script and not args.audio:
        turns = list(default_script())
    if args.turns is not None:
        if args.turns < 1:
            raise ConfigError("--turns must be at least 1")
        turns = turns[: args.turns]
    if not turns:
        raise ConfigError("nothing to say: the script has no utterances")
    return turns


def recognition_summary(config: Config, said: list[str], heard: list[str]) -> str:
    """'recognition: word error rate 12% (3 of 25 words) over 5 spoken lines, ...'."""
    errors = sum(word_errors(ref, hyp)[0] for ref, hyp in zip(said, heard, strict=True))
    words = sum(word_errors(ref, "")[1] for ref in said)
    return (
        f"recognition: word error rate {word_error_rate(said, heard):.0%} ({errors} of {words} "
        f"words) over {len(said)} spoken line(s); {recognition_mode(config)}"
    )


def recognition_mode(config: Config) -> str:
    """How speech is recognized: open vocabulary, or only a grammar's sentences."""
    if config.stt.grammar is not None:
        return f"JSGF grammar {config.stt.grammar} (only its sentences can be heard)"
    return "open vocabulary (pocketsphinx en-us language model)"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1000:.2f} ms"


async def run_demo(
    config: Config, turns: list[str | Path], out: Any = None, *, typed: bool = False
) -> int:
    """Run the turns; text lines are spoken (espeak-ng) and recognized unless ``typed``."""
    out = out or sys.stdout
    from coda_lite.service.app import build_app, latency_lines

    app = build_app(config)
    audio_dir = config.home / "demo_audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    for old in audio_dir.glob("turn-*.wav"):
        old.unlink(missing_ok=True)
    ok = failed = 0
    said: list[str] = []  # the script's lines that were spoken, and what was recognized
    heard: list[str] = []
    backend, why = app.pipeline.llm_choice
    print(f"llm: {backend} ({why})", file=out)
    if not typed and any(isinstance(t, str) for t in turns):
        print(f"stt: {recognition_mode(config)}", file=out)
    try:
        if config.llm.backend != "echo" and backend == "local":
            print("loading the model (the first run converts it once) ...", file=out, flush=True)
            await app.warm_up()  # the first turn's latency is a turn's, not a load's
        for i, turn in enumerate(turns, 1):
            spoken = isinstance(turn, str) and not typed
            kind = "audio" if isinstance(turn, Path) else "spoken" if spoken else "text"
            print(f"\nTurn {i} ({kind}{': ' + str(turn) if kind == 'audio' else ''})", file=out)
            try:
                if spoken:  # the user's line, said aloud by espeak-ng
                    print(f"  says: {turn}", file=out)
                    user_input: str | bytes | Path = await app.pipeline.tts.synthesize(str(turn))
                else:
                    user_input = turn
                result = await app.pipeline.manager.process_user_input(
                    user_input, session_id="demo"
                )
            except StageError as exc:
                failed += 1
                print(f"  error: {exc}", file=out)
                continue
            ok += 1
            if spoken:
                said.append(str(turn))
                heard.append(result.transcript)
            print(f"  you : {result.transcript}", file=out)
            print(f"  coda: {result.response}", file=out)
            if result.memories_used:
                used = "; ".join(f"{m['content']} ({m['score']:.2f})" for m in result.memories_used)
                print(f"  remembered: {used}", file=out)
            stages = " | ".join(
                f"{s} {_ms(result.timings[s])}" for s in STAGES if s in result.timings
            )
            print(f"  timings: {stages}", file=out)
            if result.latency is not None:
                for line in latency_lines(result.latency.to_dict()):
                    print(f"  {line}", file=out)
            if result.trace_id:
                print(f"  trace: {result.trace_id}", file=out)
            if result.audio:
                (audio_dir / f"turn-{i:02d}.wav").write_bytes(result.audio)
        memories = app.pipeline.long_term.memory_count
        print(f"\n{ok} turn(s) answered, {failed} failed; {memories} memories stored.", file=out)
        if said:
            print(recognition_summary(config, said, heard), file=out)
        print("Outputs:", file=out)
        outputs = {**app.outputs}
        if any(audio_dir.glob("turn-*.wav")):
            outputs.setdefault("spoken answers (WAV)", str(audio_dir))
        for what, where in outputs.items():
            print(f"  {what}: {where}", file=out)
        app.snapshots.take_snapshot(owner="demo")  # the demo session's memory as it leaves it
        print(
            "Look closer: coda-otel trace show --last | coda-otel snapshots list"
            f"  (with CODA_HOME={config.home})",
            file=out,
        )
    finally:
        await app.aclose()
    return 0 if failed == 0 else 1


def demo_grammar() -> Path:
    """The JSGF grammar of the shipped demo script's lines (its only sentences)."""
    return Path(str(resources.files("coda_lite").joinpath("data/demo_script.gram")))


def _cmd_demo(args: argparse.Namespace, config: Config) -> int:
    scripted = not args.script and not args.audio and not args.text
    if scripted and config.stt.grammar is None and not args.open_vocabulary:
        # The shipped script is heard through a grammar of its own lines; the summary says
        # so beside the word error rate. --open-vocabulary hears it with the language model.
        config.stt.grammar = demo_grammar()
    return asyncio.run(run_demo(config, demo_turns(args), typed=args.text))


def _cmd_serve(args: argparse.Namespace, config: Config) -> int:
    if args.host is not None:
        config.server.host = args.host
    if args.port is not None:
        config.server.port = args.port
    if args.allow_fault_injection:
        config.server.allow_fault_injection = True
    from coda_lite.service import server  # aiohttp and the service load only for `serve`

    return server.main(args, config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coda-lite", description="Coda Lite, an offline voice assistant"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a scripted conversation through the whole pipeline")
    demo.add_argument("--turns", type=int, help="stop after N turns")
    demo.add_argument("--script", help="text file, one user utterance per line")
    demo.add_argument("--audio", nargs="+", metavar="WAV", help="WAV files, one spoken turn each")
    demo.add_argument(
        "--text", action="store_true", help="type the script's lines instead of speaking them"
    )
    demo.add_argument(
        "--open-vocabulary",
        action="store_true",
        help="recognize the shipped script with the language model, not its grammar",
    )
    demo.set_defaults(func=_cmd_demo)
    serve = sub.add_parser("serve", help="serve the HTTP API (turns, metrics, health, debug)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--allow-fault-injection", action="store_true")
    serve.set_defaults(func=_cmd_serve)
    for p in (demo, serve):
        p.add_argument("--config", help="YAML config file (default: $CODA_CONFIG)")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        result: int = args.func(args, config)
        return result
    except ConfigError as exc:
        print(f"coda-lite: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
