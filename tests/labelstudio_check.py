"""Validates a trilla Label Studio export with Label Studio's own SDK (label-studio-sdk). It runs in
.venv-labelstudio (make labelstudio), whose pins clash with trilla's, so it imports nothing of trilla or
of the tests: `python labelstudio_check.py CONFIG.xml TASKS.json` prints one JSON report and exits 1
when the config, a task's data or an annotation's region is not what Label Studio accepts."""

import json
import sys

from label_studio_sdk.label_interface import LabelInterface


def main(config_path: str, tasks_path: str) -> int:
    interface = LabelInterface(open(config_path).read())
    errors = []
    try:
        interface.validate()
    except Exception as err:  # noqa: BLE001 - the SDK raises several kinds for a bad config
        errors.append(f"config: {err}")
    tasks = json.load(open(tasks_path))
    regions = 0
    for task in tasks:
        if not interface.validate_task({"data": task["data"]}):  # the SDK's validate_task fails on tasks with annotations
            errors.append(f"task {task.get('id')}: its data has no value for the config's object tag")
        for annotation in task.get("annotations", []):
            for region in annotation["result"]:
                regions += 1
                errors += [f"task {task.get('id')}: {e}" for e in interface.validate_region(region, return_errors=True)]
    print(json.dumps({"tasks": len(tasks), "regions": regions, "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
