<?php
// A php-gearman client that records everything a job sends it.
//   php callbacks.php tasks HOST:PORT FUNCTION WORKLOAD
//       addTask + runTasks with every callback set; prints one JSON line per callback,
//       then {"end": runTasks() result, "code": returnCode()}.
//   php callbacks.php normal HOST:PORT FUNCTION WORKLOAD
//       the doNormal() loop of PHP's manual: one JSON line per return, with its
//       returnCode, for as long as doNormal() says there is more.
[$mode, $server, $function, $workload] = array_slice($argv, 1);
$client = new GearmanClient();
$client->addServers($server);
$client->setTimeout(30000);

function out(array $event) { echo json_encode($event), "\n"; }

$names = [GEARMAN_SUCCESS => 'SUCCESS', GEARMAN_WORK_DATA => 'WORK_DATA', GEARMAN_WORK_STATUS => 'WORK_STATUS',
          GEARMAN_WORK_WARNING => 'WORK_WARNING', GEARMAN_WORK_EXCEPTION => 'WORK_EXCEPTION',
          GEARMAN_WORK_FAIL => 'WORK_FAIL', GEARMAN_TIMEOUT => 'TIMEOUT'];
$name = function ($code) use ($names) { return $names[$code] ?? "code $code"; };

if ($mode === 'tasks') {
    $client->setStatusCallback(function (GearmanTask $t) { out(['cb' => 'status', 'num' => $t->taskNumerator(), 'den' => $t->taskDenominator()]); });
    $client->setDataCallback(function (GearmanTask $t) { out(['cb' => 'data', 'data' => $t->data()]); });
    $client->setWarningCallback(function (GearmanTask $t) { out(['cb' => 'warning', 'data' => $t->data()]); });
    $client->setExceptionCallback(function (GearmanTask $t) { out(['cb' => 'exception', 'data' => $t->data()]); });
    $client->setFailCallback(function (GearmanTask $t) { out(['cb' => 'fail']); });
    $client->setCompleteCallback(function (GearmanTask $t) {
        $value = @unserialize($t->data());
        out(['cb' => 'complete', 'data' => $t->data(), 'unserialized' => $value === false ? null : $value]);
    });
    $client->addTask($function, $workload);
    $ok = $client->runTasks();
    out(['end' => $ok, 'code' => $name($client->returnCode())]);
    exit(0);
}

do {
    $result = $client->doNormal($function, $workload);
    $code = $client->returnCode();
    $event = ['code' => $name($code), 'result' => $result];
    if ($code === GEARMAN_WORK_STATUS) {
        [$event['num'], $event['den']] = $client->doStatus();
    }
    out($event);
} while (in_array($code, [GEARMAN_WORK_DATA, GEARMAN_WORK_STATUS, GEARMAN_WORK_WARNING], true));
