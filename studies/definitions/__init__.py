"""The study definitions: one module per study, each registering its factory with
:func:`dlbasics.studies.registry.register` (see :mod:`dlbasics.studies.spec` for the Study API).

A definition imports the framework (``..spec``, ``..stats``, ``..report``, ``..analysis``, ...)
and never another definition.
"""
