"""Which compute devices torch can use here: the trainer's `--device auto` picks from these."""

from __future__ import annotations

from typing import Any

__all__ = ["list_devices"]


def list_devices() -> list[dict[str, Any]]:
    import torch

    devices: list[dict[str, Any]] = [{"device": "cpu", "name": "CPU", "threads": torch.get_num_threads()}]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(
                {
                    "device": f"cuda:{index}",
                    "name": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "capability": f"{props.major}.{props.minor}",
                }
            )
    return devices
