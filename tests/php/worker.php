<?php
// A php-gearman worker used as a real peer by the tests.
// Usage: php worker.php HOST:PORT FUNCTION...
// Each function shows one thing a PHP worker can send (see the cases below).
[$host, $port] = explode(':', $argv[1]);
$worker = new GearmanWorker();
$worker->addServer($host, (int)$port);

$handlers = [
    'php_echo' => function (GearmanJob $job) { return $job->workload(); },
    'php_data' => function (GearmanJob $job) {
        $job->sendData("part1;");
        $job->sendData("part2;");
        return "end";
    },
    'php_status' => function (GearmanJob $job) {
        for ($i = 1; $i <= 4; $i++) {
            $job->sendStatus($i, 4);
            usleep(200000);
        }
        return "done";
    },
    'php_status_held' => function (GearmanJob $job) {
        // 2/4, then waits until the file named by the workload exists (the test
        // releases it once it saw the progress), then 4/4.
        $job->sendStatus(2, 4);
        for ($i = 0; $i < 1200 && !file_exists($job->workload()); $i++) {
            usleep(100000);
        }
        $job->sendStatus(4, 4);
        return "done";
    },
    'php_warning' => function (GearmanJob $job) {
        $job->sendWarning("careful now");
        return "ok";
    },
    'php_exception' => function (GearmanJob $job) {
        // Sends WORK_EXCEPTION, which ends the job; the return value is dropped.
        $job->sendException("boom: bad input " . $job->workload());
        return "";
    },
    'php_fail' => function (GearmanJob $job) {
        $job->sendFail();
        return "";
    },
    'php_unserialize' => function (GearmanJob $job) {
        return json_encode(unserialize($job->workload()));
    },
    'php_slow' => function (GearmanJob $job) {
        usleep(((int)$job->workload()) * 1000);
        return "slept";
    },
];

foreach (array_slice($argv, 2) as $name) {
    $worker->addFunction($name, $handlers[$name]);
}
// work() returns false after a job that failed; only a lost server ends the loop.
$ok = [GEARMAN_SUCCESS, GEARMAN_WORK_FAIL, GEARMAN_WORK_EXCEPTION];
while ($worker->work() || in_array($worker->returnCode(), $ok, true)) {
}
fwrite(STDERR, "worker stopped: " . $worker->returnCode() . "\n");
