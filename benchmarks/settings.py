"""`python -m benchmarks.settings`: the tuning table (`frameworks.tuning.TABLE`) as a Markdown
table, one row per setting the tuned profile applies: framework, devices, variants, how it is set,
the setting and its value, what it changes, its source document, and whether it was measured on
this project's CPU. docs/tuning.md's table is this command's output, and a test keeps it so."""

from __future__ import annotations

import pandas as pd

from frameworks.tuning import TABLE


def settings_table() -> pd.DataFrame:
    return pd.DataFrame([{"framework": setting.framework, "devices": ", ".join(setting.devices),
                          "variants": ", ".join(setting.variants) or "all", "set as": setting.kind,
                          "setting": f"`{setting.text}`", "what it changes": setting.effect,
                          "source": setting.source,
                          "measured": "measured here" if setting.measured else "not measured here"}
                         for setting in TABLE])


def markdown() -> str:
    return settings_table().to_markdown(index=False)


if __name__ == "__main__":
    print(markdown())
