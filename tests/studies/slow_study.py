"""A test-only study whose runs take long enough to interrupt (registered via DLBASICS_STUDIES).

Six settings, each its own group (distinct batch sizes); the odd ones carry a constant schedule
so they train alone (``dlbasics.models.train``), the even ones as populations.
``DLBASICS_SLOW_EPOCHS`` sets the epochs (default 150).
"""

import os

from dlbasics.studies.registry import register
from dlbasics.studies.spec import Setting, Study


@register("slow_demo")
def make(profile):
    epochs = int(os.environ.get("DLBASICS_SLOW_EPOCHS", "150"))
    settings = []
    for i, batch in enumerate((1, 2, 3, 4, 5, 6)):
        schedule = {"name": "constant"} if i % 2 else None
        settings.append(Setting(
            problem="moons", problem_args={"n": 200}, model={"hidden": [16, 16]},
            optimizer="momentum" if i % 3 == 0 else "sgd", hyper={"lr": 0.05},
            batch_size=batch, epochs=epochs, schedule=schedule,
            factors={"batch": batch, "alone": bool(schedule)}))
    return Study("slow_demo", title="Slow demo (tests)", question="Does resuming work?",
                 settings=settings, seeds=[0, 1, 2])
