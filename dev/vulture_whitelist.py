"""Names vulture (the dead-code check in dev/test.sh) cannot see being used, each with why.

Vulture reads this file as code that uses these names; it is never imported. Python and the tools we plug
into call these by name, from outside the code vulture reads.
"""

_ = object()

# Called by Python itself
__getattr__  # nslab/__init__.py: the module's lazy attributes (PEP 562)
__init_subclass__  # values.Value: runs for each subclass

# Loaded by name: drivers/__init__.py maps each driver to ("module", "ClassName") and imports it on first use
LiveFiles
LiveProcesses
LiveMachine
LiveSysctls
LiveShaper
LiveHostnamePins

# Overrides called by the standard library or click
_.list_commands  # click.Group: the order `nslab --help` lists verbs in
_.do_GET  # http.server handlers (tools/graph.py, the unit tests' fake Docker engine)
_.log_message  # http.server: keeps requests off stderr
_.address_string  # http.server: the fake Docker engine's peer has no address

# tarfile reads it when it writes a symbolic link's entry (tools/image.py)
_.linkname

# pydantic reads it from the class
model_config  # core/spec.py: the models' settings (unknown keys rejected)

# pytest: fixtures asked for by parameter name, hook arguments by name
nslab_lab  # the plugin's fixture (pytest_plugin.py, entry point pytest11)
_down_left_over  # the plugin's autouse fixture that brings leftover labs down
private_state_dir  # tests/unit/conftest.py: autouse
empty_state  # tests/unit/test_cli_fast.py: autouse
fake_docker  # tests/unit/test_target_parsing.py: a fixture, requested as a parameter
exitstatus  # pytest_sessionfinish's argument, passed by name

# Fields of Value classes in tests/unit/test_values.py: declared to test field order and repr, never read
z
secret
weights  # tests/unit/test_records.py: fields of Value classes declared to test their records, never read
anything
thing
