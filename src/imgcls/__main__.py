"""`python -m imgcls ...` runs the `imgcls` command."""

from imgcls.commands.cli import main

main()
