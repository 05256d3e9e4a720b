from trilla.cli import main

main()
