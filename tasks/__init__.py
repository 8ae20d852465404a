"""Tasks: the seed's four tasks and user task files, all in the seed's record schema."""

from tasks.base import FileTask, GeneratedTask, Task
from tasks.dict_keyerror import DictKeyError
from tasks.ioi import IndirectObjectIdentification
from tasks.list_indexerror import ListIndexError
from tasks.sva import SubjectVerbAgreement

__all__ = [
    "Task", "GeneratedTask", "FileTask",
    "DictKeyError", "ListIndexError", "SubjectVerbAgreement", "IndirectObjectIdentification",
]
