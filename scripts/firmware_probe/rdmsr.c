#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdint.h>
static const unsigned msrs[] = {0xfe, 0x2ff, 0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
  0x200,0x201,0x202,0x203,0x204,0x205,0x206,0x207,0x208,0x209,0x20a,0x20b,0x20c,0x20d,0x20e,0x20f, 0x277};
int main(int argc, char **argv) {
  for (int cpu = 0; cpu < 64; cpu++) {
    char path[64]; snprintf(path, sizeof path, "/dev/cpu/%d/msr", cpu);
    int fd = open(path, O_RDONLY);
    if (fd < 0) break;
    for (unsigned i = 0; i < sizeof msrs / sizeof msrs[0]; i++) {
      uint64_t v;
      if (pread(fd, &v, 8, msrs[i]) == 8) printf("MSR cpu %d %#x = %#llx\n", cpu, msrs[i], (unsigned long long)v);
      else printf("MSR cpu %d %#x = error\n", cpu, msrs[i]);
    }
    close(fd);
  }
  return 0;
}
