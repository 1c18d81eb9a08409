"""Patch a private copy of kwok so that local exec behaves like a kubelet's exec in two respects.

1. Exit status: kwok wraps the *exec.ExitError of a failed command with fmt.Errorf, so the streaming server cannot see it
   and answers with an InternalError. We unwrap it and return k8s.io/utils/exec.CodeExitError (which the server maps to
   the NonZeroExitCode status with an ExitCode cause).
2. stdin EOF: kwok copies the exec's stdin stream into the process's stdin pipe but never closes the pipe when the
   stream ends, so a command reading stdin (`wc -c`, `nginx -t -c /dev/stdin`, ...) never sees EOF. We close it.

Usage: python3 patch_kwok.py KWOK_MODULE_DIR
"""
import pathlib
import sys

target = pathlib.Path(sys.argv[1]) / "pkg/kwok/server/debugging_exec.go"
text = target.read_text()
call = "\terr := exec.Exec(ctx, cmd[0], cmd[1:]...)\n\tif err != nil {\n\t\treturn err\n\t}\n"
if call not in text:
    sys.exit(f"patch_kwok: the expected exec call was not found in {target}; kwok changed, update lab/patch_kwok.py")
text = text.replace(
    call,
    "\terr := exec.Exec(ctx, cmd[0], cmd[1:]...)\n"
    "\tif err != nil {\n"
    "\t\tvar exitErr *osexec.ExitError\n"
    "\t\tif errors.As(err, &exitErr) {\n"
    "\t\t\treturn utilexec.CodeExitError{Err: err, Code: exitErr.ExitCode()}\n"
    "\t\t}\n"
    "\t\treturn err\n"
    "\t}\n",
)
text = text.replace('import (\n', 'import (\n\t"errors"\n\tosexec "os/exec"\n\tutilexec "k8s.io/utils/exec"\n', 1)
target.write_text(text)
print(f"patch_kwok: patched {target}")

target = pathlib.Path(sys.argv[1]) / "pkg/utils/exec/exec.go"
text = target.read_text()
copy = "\t\t\tgo func() {\n\t\t\t\t_, _ = io.Copy(inPipe, opt.In)\n\t\t\t}()\n"
if copy not in text:
    sys.exit(f"patch_kwok: the expected stdin copy was not found in {target}; kwok changed, update lab/patch_kwok.py")
text = text.replace(copy, "\t\t\tgo func() {\n\t\t\t\t_, _ = io.Copy(inPipe, opt.In)\n\t\t\t\t_ = inPipe.Close()\n\t\t\t}()\n")
target.write_text(text)
print(f"patch_kwok: patched {target}")
