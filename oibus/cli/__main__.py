from oibus.cli import main

main(prog_name="oibus")
