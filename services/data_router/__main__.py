from services import stack_dump

stack_dump.enable()

from services.data_router.main import main  # noqa: E402  (after the stack dump, so a hung import answers it)

main()
