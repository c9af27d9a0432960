"""Write the C stub's policy header from the one reference policy (``emulator.reference_policy``).

    python -m firmware_stubs.policy_header > firmware_stubs/c/fsb_policy.h

``tests/unit/test_policy_header.py`` fails when the committed header is out of step with the policy.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from emulator.reference_policy import REFERENCE, ReferencePolicy

HEADER_NAME = "fsb_policy.h"


def c_value(value: object) -> str:
    """A C literal for a policy value: a double with its point, an int, a string, an initializer of strings."""
    if isinstance(value, bool):
        raise TypeError("a policy number may not be a bool")
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # ASCII names: a C string literal
    if isinstance(value, tuple):
        return "{" + ", ".join(c_value(v) for v in value) + "}"
    raise TypeError(f"no C literal for {type(value).__name__}")


def render(policy: ReferencePolicy = REFERENCE) -> str:
    lines = [
        f"/* {HEADER_NAME} - the reference policy's numbers for the C stub. GENERATED: do not edit.",
        " *",
        " * Source: emulator/reference_policy.py (the one reference policy, also read by the Python reference",
        " * board and the cluster's built-in policy). Regenerate after changing it:",
        f" *   python -m firmware_stubs.policy_header > firmware_stubs/c/{HEADER_NAME}",
        " */",
        "#ifndef FSB_POLICY_H",
        "#define FSB_POLICY_H",
        "",
    ]
    for f in dataclasses.fields(policy):
        value = getattr(policy, f.name)
        name = f"FSB_POLICY_{f.name.upper()}"
        lines.append(f"#define {name} {c_value(value)}")
        if isinstance(value, tuple):
            lines.append(f"#define {name.removesuffix('S')}_COUNT {len(value)}")
    lines += ["", "#endif /* FSB_POLICY_H */", ""]
    return "\n".join(lines)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
