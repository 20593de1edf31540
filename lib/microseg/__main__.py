from microseg.cli import main

main()
