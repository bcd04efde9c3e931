from gen_translate.main import main

main()
