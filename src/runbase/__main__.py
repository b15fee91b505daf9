from runbase.commands import main

main()
