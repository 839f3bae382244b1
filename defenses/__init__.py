"""Built-in defenses. Importing this package registers them in
:data:`robustbench_nlp.registry.DEFENSES` (nothing else happens at import time).

Add a defense: a module here with a ``Defense`` subclass decorated by
``@DEFENSES.register("name")``, imported below (see README, "Add a defense").
"""

from . import finetune, freelb, peaft, prompt_tuning, rose  # noqa: F401
from .base import Defense, TrainConfig  # noqa: F401
