from services import stack_dump

stack_dump.enable()

from services.console.main import main  # noqa: E402  (after the stack dump, so a hung import answers it)

main()
