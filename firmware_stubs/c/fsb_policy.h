/* fsb_policy.h - the reference policy's numbers for the C stub. GENERATED: do not edit.
 *
 * Source: emulator/reference_policy.py (the one reference policy, also read by the Python reference
 * board and the cluster's built-in policy). Regenerate after changing it:
 *   python -m firmware_stubs.policy_header > firmware_stubs/c/fsb_policy.h
 */
#ifndef FSB_POLICY_H
#define FSB_POLICY_H

#define FSB_POLICY_PERIOD_S 10.0
#define FSB_POLICY_RAIL "payload"
#define FSB_POLICY_LEVELS {"low", "mid", "high", "max"}
#define FSB_POLICY_LEVEL_COUNT 4
#define FSB_POLICY_START_LEVEL "high"
#define FSB_POLICY_SOC_OFF 0.3
#define FSB_POLICY_SOC_ON 0.55
#define FSB_POLICY_SOC_LOW 0.45
#define FSB_POLICY_SOC_ECLIPSE 0.7
#define FSB_POLICY_TEMP_HIGH_DEGC 80.0
#define FSB_POLICY_TEMP_LOW_DEGC 70.0
#define FSB_POLICY_TEMP_RESTART_DEGC 75.0
#define FSB_POLICY_QUEUE_TARGET 2
#define FSB_POLICY_JOB_SIZE 1000
#define FSB_POLICY_BUS_OFF_V 29.2
#define FSB_POLICY_BUS_ON_V 30.2

#endif /* FSB_POLICY_H */
