"""Built-in attacks. Importing this package registers them in
:data:`robustbench_nlp.registry.ATTACKS`; textattack itself is imported lazily, when an
attack is built.

Layout: :mod:`.base` (the attack interface and per-example result), :mod:`.recipe` (the base
of every textattack recipe), one module per recipe (:mod:`.textfooler`, :mod:`.pwws`,
:mod:`.deepwordbug`, :mod:`.textbugger`, :mod:`.bae`, :mod:`.bert_attack`, :mod:`.a2t`),
:mod:`.ensemble` (the worst case over a suite), :mod:`.advglue` (a fixed adversarial set),
:mod:`.wrapper` (the victim model textattack queries), :mod:`.resources` /
:mod:`.counterfit` / :mod:`.textattack_compat` (offline resources), :mod:`.polarity` and
:mod:`.protocol` (validity and comparability of attacks).
"""

from . import (a2t, advglue, bae, bert_attack, deepwordbug, ensemble, pwws,  # noqa: F401
               textbugger, textfooler)
from .base import Attack, ExampleResult  # noqa: F401
