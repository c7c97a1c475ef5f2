"""rectifiers: *Delving Deep into Rectifiers* (He, Zhang, Ren, Sun, 2015) as usable software.

Building blocks live in :mod:`rectifiers.nn` (PReLU, the activation zoo, SPP) and
:mod:`rectifiers.init` (He/MSRA and the other initialisations); models in
:mod:`rectifiers.models`; data, training and evaluation in :mod:`rectifiers.data`,
:mod:`rectifiers.train` and :mod:`rectifiers.eval`; the analysis tools in
:mod:`rectifiers.analysis`. The top-level import stays light (torch + numpy).
"""

__version__ = "0.1.0"
