"""Built-in attacks. Importing this package registers them in
:data:`robustbench_nlp.registry.ATTACKS`; textattack itself is imported lazily, when an
attack is built."""

from . import advglue, textfooler  # noqa: F401
from .base import Attack, ExampleResult  # noqa: F401
