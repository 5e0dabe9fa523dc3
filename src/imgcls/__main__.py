"""`python -m imgcls ...` runs the `imgcls` command."""

from imgcls.predict import main

main()
