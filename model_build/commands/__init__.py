"""The `model-build` commands, one module each: parse flags, call the library, print.

The library modules (`model_build.training.train`, `evaluate`, `export`, `synth`) do the work and
can be called from Python, benchmarks and tests without typer. Shared options come from
`edge_agent.commands.options`, so a flag means the same in both programs. TensorFlow is
imported inside the commands that need it, so `model-build --help` and `synth` start fast.
"""
