"""One turn through Coda Lite: stt -> memory_retrieval -> llm (+ tts) -> memory_update.

    from coda_lite.pipeline.build import build_pipeline
    pipeline = build_pipeline(load_config(), observer=my_observer)
    result = await pipeline.manager.process_turn("What is my name?", session_id="s1")

``stages`` holds the stage protocols, ``observer`` how the pipeline lets itself be watched
(without knowing by whom), ``conversation`` the turn itself, ``reply`` the answer streaming into
speech, ``turns`` the turns still running (barge-in), ``latency`` a turn's clock. Nothing here
imports coda_otel: the service wires the two together.
"""
