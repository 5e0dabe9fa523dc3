"""`python -m imgcls ...` runs the `imgcls` command."""

from imgcls.commands.predict import main

main()
