from gen_notifier.main import main

main()
