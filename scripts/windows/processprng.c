/* bcryptprimitives.dll for Wine 8.0, which lacks it: Rust's std (1.78 and
 * later) imports ProcessPrng from it for random hash seeds, and an .exe
 * that imports a missing function does not start. Real Windows (10 and
 * later) has this DLL; it is only ever put in a Wine prefix (see
 * scripts/windows-toolchain.sh), never shipped.
 *
 * ProcessPrng fills the buffer from the system's CSPRNG and never fails
 * on Windows; here it forwards to RtlGenRandom (advapi32's
 * SystemFunction036), which Wine has, a ULONG-sized piece at a time. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG piece = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, piece))
            return FALSE;
        data += piece;
        len -= piece;
    }
    return TRUE;
}
