/*
 * startup.c - vector table and reset handler for the LM3S6965 (Cortex-M3), bare metal, no C library start-up.
 *
 * At reset the CPU loads the stack pointer from word 0 and jumps to word 1 (reset_handler), which copies
 * .data from flash, zeroes .bss and calls main(). Every fault and unexpected interrupt ends in a loop that
 * stops feeding the watchdog, so the board resets instead of running on in an unknown state.
 */
#include <stdint.h>

extern uint32_t _stack_top, _data_load, _data_start, _data_end, _bss_start, _bss_end;

int main(void);
void reset_handler(void);
void default_handler(void);

/* Handlers the port defines (port.c); weak aliases here so an unused one needs no definition. */
void systick_handler(void) __attribute__((weak, alias("default_handler")));
void uart0_handler(void) __attribute__((weak, alias("default_handler")));
void watchdog_handler(void) __attribute__((weak, alias("default_handler")));

void default_handler(void)
{
    for (;;) {
        /* the watchdog resets the board */
    }
}

void reset_handler(void)
{
    uint32_t *src = &_data_load, *dst = &_data_start;
    while (dst < &_data_end) {
        *dst++ = *src++;
    }
    for (dst = &_bss_start; dst < &_bss_end; dst++) {
        *dst = 0;
    }
    (void)main();
    for (;;) {
    }
}

#define N_IRQ 48 /* LM3S6965 interrupt lines (datasheet, table 2-9) */

typedef void (*vector)(void);

/* 16 system exceptions, then the IRQs. */
__attribute__((section(".vectors"), used)) static const vector VECTORS[16 + N_IRQ] = {
    (vector)(uintptr_t)&_stack_top, /* initial main stack pointer */
    reset_handler,
    default_handler, /* NMI */
    default_handler, /* HardFault */
    default_handler, /* MemManage */
    default_handler, /* BusFault */
    default_handler, /* UsageFault */
    0,
    0,
    0,
    0, /* reserved */
    default_handler, /* SVCall */
    default_handler, /* DebugMonitor */
    0,               /* reserved */
    default_handler, /* PendSV */
    systick_handler, /* SysTick: the millisecond tick */
    default_handler, /* 0: GPIO A */
    default_handler, /* 1: GPIO B */
    default_handler, /* 2: GPIO C */
    default_handler, /* 3: GPIO D */
    default_handler, /* 4: GPIO E */
    uart0_handler, /* 5: UART0: the flatsat line */
    default_handler, /* 6: UART1 */
    default_handler, /* 7: SSI0 */
    default_handler, /* 8: I2C0 */
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    watchdog_handler, /* 18: watchdog: its first time-out (the second resets) */
    default_handler, /* 19: timer 0A */
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
};
